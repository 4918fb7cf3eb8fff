"""The reset-request form at /reset/."""

from __future__ import annotations

import logging
from dataclasses import replace

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods
from django_ratelimit.core import is_ratelimited

from portal_reset.client_address import client_ip

from .. import services
from ..email_addresses import rate_limit_key
from ..form_timing import Timing, check_timing, new_timing_value
from ..forms import FAMILY_PREFIX, BaseFamilyFormSet, FamilyFormSet, ResetRequestForm, to_submission
from ..models import HeldSubmission
from ..practice_time import access_window_ends

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


def _over_rate_limit(request: HttpRequest, *, group: str, key: str, rate: str) -> bool:
    """Count one submission against ``key`` in the shared cache.

    Fails open: with the cache (Redis) down a patient's request is still
    taken — the outbox keeps its emails until the broker is back — rather
    than answered with a 500. The limit is a guard, not a gate."""
    try:
        return is_ratelimited(request, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
    except Exception as exc:  # the cache backend's own errors (redis.ConnectionError …)
        logger.warning("rate limit %s not checked, the cache is unavailable: %s", group, type(exc).__name__)
        return False


def _confirmation(reference: str) -> HttpResponse:
    """303 See Other to the confirmation page, the same for every outcome
    that looks like success."""
    response = redirect("requests_app:submitted", reference=reference)
    response.status_code = 303
    return response


def _rate_limited(request: HttpRequest) -> HttpResponse:
    return render(request, "requests_app/rate_limited.html", status=429)


@sensitive_post_parameters()
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def reset_request(request: HttpRequest) -> HttpResponse:
    """The reset-request form. A valid POST past the access window files the
    request (or holds it, if it looks automated) and redirects to the
    confirmation; an invalid one shows the errors (200); one inside the
    window shows what to do instead and stores nothing."""
    expired = False
    if request.method == "POST":
        if _over_rate_limit(
            request, group="reset-address", key=client_ip(request), rate=settings.SUBMIT_RATE_PER_ADDRESS
        ):
            return _rate_limited(request)
        form = ResetRequestForm(request.POST)
        family = FamilyFormSet(request.POST, prefix=FAMILY_PREFIX)
        if form.is_valid() and family.is_valid():
            window_ends = access_window_ends(form.cleaned_data["appointment_date"])
            if timezone.now() < window_ends:
                return render(
                    request,
                    "requests_app/too_early.html",
                    {
                        "window_ends": window_ends,
                        "access_link_hours": settings.ACCESS_LINK_HOURS,
                    },
                )
            timing = check_timing(request.POST)
            expired = timing is Timing.EXPIRED
            if not expired:
                return _file(request, form, family, timing)
    else:
        form = ResetRequestForm()
        family = FamilyFormSet(prefix=FAMILY_PREFIX)
    return render(
        request,
        "requests_app/reset_form.html",
        {"form": form, "family": family, "timing_value": new_timing_value(), "expired": expired},
    )


@sensitive_variables()
def _file(request: HttpRequest, form: ResetRequestForm, family: BaseFamilyFormSet, timing: Timing) -> HttpResponse:
    """A valid submission past the window: held if it looks automated, kept
    without an email past the per-email limit, filed otherwise; the sender
    sees the same confirmation whichever it was."""
    submission = replace(to_submission(form, family), language=request.LANGUAGE_CODE)
    why = _held_because(form, timing)
    if why is not None:
        return _confirmation(services.held_create(submission=submission, why=why).reference)
    # Counted only for submissions that would be filed: posts that store
    # nothing, or are held, cannot use up a patient's quota.
    # An address's +tag (and Gmail's dotted) spellings count as one.
    limit_key = rate_limit_key(submission.email)
    if _over_rate_limit(request, group="reset-email", key=limit_key, rate=settings.SUBMIT_RATE_PER_EMAIL):
        return _confirmation(services.reset_submit_past_email_limit(submission=submission))
    return _confirmation(services.reset_submit(submission=submission).reset.reference)
