"""After the form: the confirmation page, the status page and the status
page's "I can get in now"."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from .. import selectors
from ..exceptions import WorkflowError
from ..models import ResetRequest, Status
from ..references import is_reference
from ..services.workflow import reset_withdraw
from ..working_hours import due_after


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
        # When to expect the reset: RESET_SLA_HOURS of the practice's working
        # time from now, worked out as the page is shown.
        {"reference": reference, "sla_hours": settings.RESET_SLA_HOURS, "reply_by": due_after()},
    )


def _request_or_404(token: str) -> ResetRequest:
    reset_request = selectors.reset_by_status_token(token=token)
    if reset_request is None:
        raise Http404
    return reset_request


def _in_its_language(
    request: HttpRequest, reset_request: ResetRequest, template: str, context: dict[str, Any]
) -> HttpResponse:
    """A page about one request, in the language it was filed in, whatever
    the browser asks for: the status link comes from an email written in
    that language, and may be opened on any device."""
    with translation.override(reset_request.language):
        response = render(request, template, {"reset_request": reset_request, **context})
    # LocaleMiddleware would name the browser's language; it keeps this one.
    response["Content-Language"] = reset_request.language
    return response


def _back_to_status(reset_request: ResetRequest) -> HttpResponseRedirect:
    response = HttpResponseRedirect(reset_request.get_status_url())
    response.status_code = 303
    return response


@never_cache
@require_safe
def status(request: HttpRequest, token: str) -> HttpResponse:
    """Where a request stands, reached from the acknowledgment email."""
    reset_request = _request_or_404(token)
    # The promise is the request's own due time while its clock runs (not
    # while it waits on the patient: the clock is paused, the time unknown).
    due_clock_runs = reset_request.status in (Status.NEW, Status.IN_PROGRESS)
    response = _in_its_language(
        request,
        reset_request,
        "requests_app/status.html",
        {
            "step": selectors.public_step(reset_request),
            "reply_by": reset_request.due_at if due_clock_runs else None,
            "overdue": selectors.is_overdue(reset_request),
            # The practice's messages as sent, oldest first.
            "patient_messages": list(reset_request.patient_messages.only("created_at", "body")),
        },
    )
    # The token is a secret: keep it out of Referer headers sent elsewhere.
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def status_withdraw(request: HttpRequest, token: str) -> HttpResponse:
    """The status page's "I can get in now": GET asks the patient to confirm, POST (CSRF
    checked) closes the open request as withdrawn, then back to the status
    page. An ended request has nothing to close: both go back to the status
    page, nothing changed, so a second click or a stale tab is harmless.

    This page keeps the site's ``Referrer-Policy: same-origin`` rather than
    the status page's ``no-referrer``: under no-referrer a browser sends
    ``Origin: null`` with the POST, and Django's CSRF check refuses it. The
    URL still reaches no other site.
    """
    reset_request = _request_or_404(token)
    if request.method == "POST":
        if reset_request.is_open:
            # It may end meanwhile (a second click): the status page says how.
            with suppress(WorkflowError):
                reset_withdraw(reset_id=reset_request.pk)
        return _back_to_status(reset_request)
    if not reset_request.is_open:
        return _back_to_status(reset_request)
    return _in_its_language(request, reset_request, "requests_app/status_withdraw.html", {})
