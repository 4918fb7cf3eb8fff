"""The reset-request form at /reset/."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from portal_reset.client_address import client_ip

from .. import services
from ..email_addresses import rate_limit_key
from ..form_timing import Timing, check_timing, new_timing_value
from ..forms import (
    FAMILY_PREFIX,
    BaseFamilyFormSet,
    FamilyFormSet,
    ResetRequestForm,
    VisitDateForm,
    error_summary,
    family_is_valid,
    is_date_step,
    to_submission,
)
from ..models import HeldSubmission
from ..practice_time import access_window_ends
from ..rate_limits import Limit, first_limit_passed

logger = logging.getLogger(__name__)


def _held_because(form: ResetRequestForm, timing: Timing) -> str | None:
    """Why a valid submission looks automated, or None: the honeypot was
    filled in, or the form's timing value is missing, forged or says it came
    back sooner than a person could fill it."""
    if form.cleaned_data.get("website"):
        return HeldSubmission.Why.HONEYPOT
    if timing is Timing.TOO_FAST:
        return HeldSubmission.Why.TOO_FAST
    if timing is Timing.MISSING:
        return HeldSubmission.Why.NO_TIMING
    return None


def _confirmation(reference: str) -> HttpResponse:
    """303 See Other to the confirmation page, the same for every outcome
    that looks like success."""
    response = redirect("requests_app:submitted", reference=reference)
    response.status_code = 303
    return response


def _rate_limited(request: HttpRequest) -> HttpResponse:
    return render(request, "requests_app/rate_limited.html", status=429)


def _too_early(request: HttpRequest, window_ends: datetime) -> HttpResponse:
    """What to do while the invitation link may still come or work: 200,
    nothing stored."""
    return render(
        request,
        "requests_app/too_early.html",
        {"window_ends": window_ends, "access_link_hours": settings.ACCESS_LINK_HOURS},
    )


def visit_page_context(form: VisitDateForm) -> dict[str, Any]:
    """The date step's page: the one question, and every hidden value a
    one-step POST needs (the timing value, the family management form)."""
    return {
        "form": form,
        # The empty question's rendering is kept per process and language
        # (templates/requests_app/form/visit_form.html), under what else it
        # shows: its hint (a date a week ago) and whether it is the heading.
        "visit_fields_key": None if form.is_bound or form.initial else form.rendering_key(),
        "family": FamilyFormSet(prefix=FAMILY_PREFIX),
        "timing_value": new_timing_value(),
        "summary": error_summary(form) if form.is_bound else [],
    }


def details_page_context(
    form: ResetRequestForm, family: BaseFamilyFormSet, *, visit: date | None, expired: bool = False
) -> dict[str, Any]:
    """The rest of the form. ``visit``: the date already answered, kept as a
    hidden value; None shows the question again (its answer was refused)."""
    bound = form.is_bound
    answer = form.family_answer()
    # After "No" the rows are not read, so not judged either.
    family_judged = bound and answer != "no"
    summary = error_summary(form, family if family_judged else None) if bound else []
    email = form["email"].value() if bound and "email" not in form.errors else None
    return {
        "form": form,
        # The empty form's rendering is kept per language: never one that
        # carries a value (a honeypot filled in on the first page).
        "cacheable": not bound and not form.initial.get("website"),
        "family": family if answer != "no" else FamilyFormSet(prefix=FAMILY_PREFIX),
        # Hidden until "Yes"; shown too when rows sent without an answer
        # (a one-step POST) have something in them.
        "family_open": answer == "yes" or (family_judged and any(f.has_changed() for f in family.forms)),
        "visit": visit,
        "summary": summary,
        "email_check": email.strip() if isinstance(email, str) else None,
        "timing_value": new_timing_value(),
        "expired": expired,
    }


@sensitive_post_parameters()
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def reset_request(request: HttpRequest) -> HttpResponse:
    """The reset-request form, eligibility first. GET asks when the visit
    was; a POST with only that answer (the date step) shows the too-early
    guidance, or the rest of the form with the date kept, and stores
    nothing. A POST with the patient's details (the rest of the form, or
    every field in one step) files the request past the window (or holds
    it, if it looks automated) and redirects to the confirmation; an
    invalid one shows the errors (200), everything typed kept; one inside
    the window shows what to do instead and stores nothing."""
    if request.method != "POST":
        return render(request, "requests_app/reset_visit.html", visit_page_context(VisitDateForm()))
    # Every POST counts against the client's address, once: a filing
    # together with the patient's email (one round trip), any other POST
    # alone, each before it stores or shows anything.
    address = Limit("reset-address", client_ip(request), settings.SUBMIT_RATE_PER_ADDRESS)
    if is_date_step(request.POST):
        if first_limit_passed([address]):
            return _rate_limited(request)
        return _date_step(request)

    expired = False
    form = ResetRequestForm(request.POST)
    family = FamilyFormSet(request.POST, prefix=FAMILY_PREFIX)
    # Both judged, so that every error shows at once, the family's too.
    form_valid = form.is_valid()
    if family_is_valid(form, family) and form_valid:
        window_ends = access_window_ends(form.cleaned_data["appointment_date"])
        if timezone.now() < window_ends:
            if first_limit_passed([address]):
                return _rate_limited(request)
            return _too_early(request, window_ends)
        timing = check_timing(request.POST)
        expired = timing is Timing.EXPIRED
        if not expired:
            return _file(request, form, family, timing, address)
    if first_limit_passed([address]):
        return _rate_limited(request)
    visit = form.cleaned_data.get("appointment_date") if "appointment_date" not in form.errors else None
    return render(
        request, "requests_app/reset_form.html", details_page_context(form, family, visit=visit, expired=expired)
    )


def _date_step(request: HttpRequest) -> HttpResponse:
    """The first question answered: too early (the guidance), or the rest
    of the form with the date kept. Nothing is stored either way."""
    form = VisitDateForm(request.POST)
    if not form.is_valid():
        return render(request, "requests_app/reset_visit.html", visit_page_context(form))
    visit: date = form.cleaned_data["appointment_date"]
    window_ends = access_window_ends(visit)
    if timezone.now() < window_ends:
        return _too_early(request, window_ends)
    # A honeypot filled in on the first page is filled in on this one too.
    details = ResetRequestForm(initial={"appointment_date": visit, "website": form.cleaned_data.get("website", "")})
    return render(
        request,
        "requests_app/reset_form.html",
        details_page_context(details, FamilyFormSet(prefix=FAMILY_PREFIX), visit=visit),
    )


@sensitive_variables()
def _file(
    request: HttpRequest, form: ResetRequestForm, family: BaseFamilyFormSet, timing: Timing, address: Limit
) -> HttpResponse:
    """A valid submission past the window: held if it looks automated, kept
    without an email past the per-email limit, filed otherwise; the sender
    sees the same confirmation whichever it was."""
    submission = replace(to_submission(form, family), language=request.LANGUAGE_CODE)
    why = _held_because(form, timing)
    if why is not None:
        if first_limit_passed([address]):
            return _rate_limited(request)
        return _confirmation(services.held_create(submission=submission, why=why).reference)
    # The email is counted only for submissions that would be filed: posts
    # that store nothing, or are held, cannot use up a patient's quota; nor
    # can one past the address limit (the count stops there).
    # An address's +tag (and Gmail's dotted) spellings count as one.
    email = Limit("reset-email", rate_limit_key(submission.email), settings.SUBMIT_RATE_PER_EMAIL)
    passed = first_limit_passed([address, email])
    if passed is address:
        return _rate_limited(request)
    if passed is email:
        return _confirmation(services.reset_submit_past_email_limit(submission=submission))
    return _confirmation(services.reset_submit(submission=submission).reset.reference)
