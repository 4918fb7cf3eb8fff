"""Patient pages. Thin: parse, call a service, redirect after POST."""

from __future__ import annotations

import logging
from dataclasses import replace

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_safe
from django_ratelimit.core import is_ratelimited

from portal_reset.client_address import client_ip

from . import selectors, services
from .email_addresses import rate_limit_key
from .form_timing import Timing, check_timing, new_timing_value
from .forms import FAMILY_PREFIX, BaseFamilyFormSet, FamilyFormSet, ResetRequestForm, to_submission
from .models import HeldSubmission
from .practice_time import access_window_ends
from .references import is_reference

logger = logging.getLogger(__name__)


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


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Database and broker reachability, for load balancers and compose."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        logger.exception("health check: database is down")
        checks["database"] = "down"
    from portal_reset.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        checks["broker"] = "ok"
    except Exception:
        logger.warning("health check: broker is down")
        checks["broker"] = "down"
    ok = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if ok else 503)
