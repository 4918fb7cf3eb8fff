"""Every non-trivial read: status links, the public step, the staff queue."""

from __future__ import annotations

import re
import secrets

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import REFERENCE_ALPHABET, REFERENCE_LENGTH, ResetRequest, normalize_reference

_REFERENCE = re.compile(rf"[{REFERENCE_ALPHABET}]{{4}}-[{REFERENCE_ALPHABET}]{{4}}")


def is_reference(text: str) -> bool:
    """Whether ``text`` is a reference as we print it (``K7QM-3XTD``)."""
    return _REFERENCE.fullmatch(text) is not None


def request_by_status_token(*, token: str) -> ResetRequest | None:
    """The request a status link points at, or None for a wrong token or a
    request whose personal data (and so its link) was purged.

    The token is the reference (to find the row) followed by a secret that
    is compared in constant time.
    """
    reference = normalize_reference(token[:REFERENCE_LENGTH])
    secret = token[REFERENCE_LENGTH:]
    # Only a well-formed reference reaches the database (PostgreSQL refuses
    # a NUL byte in a query parameter with an error, not an empty result).
    if len(secret) < 22 or not is_reference(reference):
        return None
    request = ResetRequest.objects.filter(reference=reference).exclude(status_secret="").first()
    if request is None or not secrets.compare_digest(request.status_secret.encode(), secret.encode()):
        return None
    return request


def public_step(request: ResetRequest) -> str:
    """The coarse step a patient sees: received → being verified → access
    reset, or closed."""
    Status = ResetRequest.Status
    return {
        Status.NEW: "received",
        Status.IN_PROGRESS: "verifying",
        Status.WAITING: "verifying",
        Status.RESOLVED: "reset",
        Status.CLOSED: "closed",
    }[ResetRequest.Status(request.status)]


def overdue_q() -> Q:
    """Open, not waiting on the patient, and past its due time."""
    return Q(
        status__in=[ResetRequest.Status.NEW, ResetRequest.Status.IN_PROGRESS],
        due_at__lt=timezone.now(),
    )


def requests_overdue() -> QuerySet[ResetRequest]:
    return ResetRequest.objects.filter(overdue_q()).order_by("due_at")
