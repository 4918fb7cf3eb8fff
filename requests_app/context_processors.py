from typing import Any

from django.http import HttpRequest

from .outbox.render import practice_context


def practice(request: HttpRequest) -> dict[str, Any]:
    """The practice's name, contact (email, and the phone staff call from, with
    its tap-to-call link) and portal links on every page."""
    return practice_context()
