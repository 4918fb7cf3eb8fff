"""What a form whose CSRF check failed answers (CSRF_FAILURE_VIEW).

The usual cause is an old tab: the page was open for a long time, or the
browser keeps no cookies. A patient meets a page in the practice's voice,
in their language, saying so, with the reset form again (a fresh CSRF
token, a fresh timing value) and what they had typed in it; nothing is
stored or sent. Staff pages get a plain English page. Never Django's
technical page, never a 500.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from ..forms import (
    FAMILY_PREFIX,
    FamilyFormSet,
    ResetRequestForm,
    VisitDateForm,
    is_date_step,
    shown_as_typed,
)
from .reset import details_page_context, visit_page_context

logger = logging.getLogger(__name__)

STAFF_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Forbidden (403)</title></head><body>'
    "<h1>Forbidden (403)</h1>"
    "<p>The form could not be sent: its security check failed. The page was probably open for a long time, "
    "or this browser is blocking cookies for this site.</p>"
    '<p>Go back, reload the page and try again. <a href="{url}">Staff sign-in</a></p>'
    "</body></html>"
)


@sensitive_post_parameters()
@never_cache
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    # ``reason`` (which check failed) is for the log, where Django's CSRF
    # middleware has already written it; never for the page.
    if request.path.startswith(reverse("admin:index")):
        return HttpResponseForbidden(STAFF_PAGE.format(url=escape(reverse("admin:login"))))
    try:
        return _patient_page(request)
    except Exception:
        logger.exception("the CSRF failure page could not be rendered")
        return HttpResponseForbidden("Forbidden.\n", content_type="text/plain; charset=utf-8")


def _patient_page(request: HttpRequest) -> HttpResponse:
    context: dict[str, object] = {"reset_form": False}
    if request.path == reverse("requests_app:reset") and request.method == "POST":
        context.update(_reset_form_again(request))
    return render(request, "403_csrf.html", context, status=403)


def _reset_form_again(request: HttpRequest) -> dict[str, object]:
    """The step the patient was on, filled in with what they had typed
    (not judged: no error messages), with a fresh token and timing value.
    The values go back into the page only through Django's widgets and
    templates, escaped like any other."""
    try:
        data = request.POST
    except Exception:  # a body Django would not read: the form, empty
        data = None
    if data is None or is_date_step(data):
        # This page's heading is its own: the question is not the H1 here.
        visit = VisitDateForm(data, heading=False) if data is not None else VisitDateForm(heading=False)
        if visit.is_bound:
            shown_as_typed(visit)
        return {"reset_form": "visit", **visit_page_context(visit), "summary": []}
    form = ResetRequestForm(data)
    family = FamilyFormSet(data, prefix=FAMILY_PREFIX)
    shown_as_typed(form)
    shown_as_typed(family)
    context = details_page_context(form, family, visit=None)
    return {"reset_form": "details", **context, "summary": []}
