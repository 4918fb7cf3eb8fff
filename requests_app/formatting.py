"""How staff pages and emails write people, ages and times."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .models import Status


def person_name(user: Any) -> str:
    """A staff member's full name, or their user name; "" for nobody."""
    if user is None:
        return ""
    full: str = user.get_full_name()
    return full or user.get_username()


def format_age(delta: timedelta) -> str:
    """3 d 4 h, 5 h, 40 min."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h"
    return f"{minutes} min"


def format_when(value: datetime | None) -> str:
    """``Mar 4 09:30`` in the practice's time, or "" for no time."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    return f"{local:%b} {local.day} {local:%H:%M}"


def status_label(code: str) -> str:
    """A status as staff read it ("In progress"); an unknown code as it is."""
    return str(Status(code).label) if code in Status.values else code
