"""The guided help: the practice's troubleshooting steps."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe


@require_safe
def guide(request: HttpRequest) -> HttpResponse:
    """The practice's troubleshooting steps, ending in the reset request."""
    return render(
        request,
        "requests_app/guide.html",
        {
            "access_link_hours": settings.ACCESS_LINK_HOURS,
            "portal_trouble_url": settings.PORTAL_TROUBLE_URL,
        },
    )
