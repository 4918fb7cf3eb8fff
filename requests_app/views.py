"""Patient pages. Thin: parse, call a service, redirect after POST."""

from __future__ import annotations

import logging
from dataclasses import replace

from django.conf import settings
from django.core import signing
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods
from django_ratelimit.core import is_ratelimited

from portal_reset.client_address import client_ip

from . import selectors, services
from .forms import FAMILY_PREFIX, FamilyFormSet, ResetRequestForm, to_submission
from .practice_time import access_window_ends
from .references import is_reference, new_reference

logger = logging.getLogger(__name__)

# A signed cookie set when the form is shown: a form sent back sooner than
# SUBMIT_MIN_SECONDS after that (or with no such cookie) came from a bot.
STARTED_COOKIE = "reset_form_started"
STARTED_SALT = "requests_app.form_started"


@require_GET
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


def _looks_like_bot(request: HttpRequest, form: ResetRequestForm) -> bool:
    """The honeypot was filled in, or the form came back sooner than a
    person could fill it (SUBMIT_MIN_SECONDS; 0 turns that check off)."""
    if form.cleaned_data.get("website"):
        return True
    if settings.SUBMIT_MIN_SECONDS <= 0:
        return False
    try:
        started = float(request.get_signed_cookie(STARTED_COOKIE, salt=STARTED_SALT) or "")
    except (KeyError, signing.BadSignature, ValueError):
        return True
    return timezone.now().timestamp() - started < settings.SUBMIT_MIN_SECONDS


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
@require_http_methods(["GET", "POST"])
def reset_request(request: HttpRequest) -> HttpResponse:
    """The reset-request form. A valid POST past the access window files the
    request and redirects to the confirmation; an invalid one shows the
    errors (200); one inside the window shows what to do instead and stores
    nothing."""
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
            # Counted only for submissions that would be stored.
            if _over_rate_limit(
                request, group="reset-email", key=form.cleaned_data["email"], rate=settings.SUBMIT_RATE_PER_EMAIL
            ):
                return _rate_limited(request)
            if _looks_like_bot(request, form):
                # Looks accepted; nothing is stored or sent.
                logger.info("reset form dropped as automated")
                return _confirmation(new_reference())
            # Inline, not a local: error reports list this frame's variables.
            result = services.reset_submit(
                submission=replace(to_submission(form, family), language=request.LANGUAGE_CODE)
            )
            return _confirmation(result.reset.reference)
    else:
        form = ResetRequestForm()
        family = FamilyFormSet(prefix=FAMILY_PREFIX)
    response = render(request, "requests_app/reset_form.html", {"form": form, "family": family})
    if request.method == "GET":
        response.set_signed_cookie(
            STARTED_COOKIE,
            str(timezone.now().timestamp()),
            salt=STARTED_SALT,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    return response


@require_GET
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
@require_GET
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
@require_GET
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
