"""After the form: the confirmation page and the status page."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .. import selectors
from ..references import is_reference


@require_safe
def submitted(request: HttpRequest, reference: str) -> HttpResponse:
    """Confirmation: the reference and what happens next, nothing else.

    It reads nothing from the database, so it cannot tell anyone whether a
    request (or someone's earlier request) exists.
    """
    if not is_reference(reference):
        raise Http404
    return render(
        request,
        "requests_app/submitted.html",
        {"reference": reference, "sla_hours": settings.RESET_SLA_HOURS},
    )


@never_cache
@require_safe
def status(request: HttpRequest, token: str) -> HttpResponse:
    """Where a request stands, reached from the acknowledgment email."""
    reset_request = selectors.reset_by_status_token(token=token)
    if reset_request is None:
        raise Http404
    response = render(
        request,
        "requests_app/status.html",
        {
            "reset_request": reset_request,
            "step": selectors.public_step(reset_request),
            "sla_hours": settings.RESET_SLA_HOURS,
        },
    )
    # The token is a secret: keep it out of Referer headers sent elsewhere.
    response["Referrer-Policy"] = "no-referrer"
    return response
