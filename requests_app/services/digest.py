"""The daily digest for staff: overdue requests, and held submissions (a
real patient may be among them)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from ..models import HeldSubmission, OutboundEmail
from ..outbox.queue import email_queue
from ..practice_time import practice_day_start, practice_today
from ..selectors import resets_overdue


def digest_queue_overdue() -> OutboundEmail | None:
    """Queue the daily digest to STAFF_NOTIFY_EMAIL, at most once a day (in
    the practice's time zone) and only when a request is overdue or a
    submission is held."""
    day_start = practice_day_start(practice_today())
    with transaction.atomic():
        if not resets_overdue().exists() and not HeldSubmission.objects.exists():
            return None
        already = OutboundEmail.objects.filter(
            kind=OutboundEmail.Kind.STAFF_OVERDUE_DIGEST, created_at__gte=day_start
        ).exists()
        if already:
            return None
        return email_queue(reset=None, kind=OutboundEmail.Kind.STAFF_OVERDUE_DIGEST, to=settings.STAFF_NOTIFY_EMAIL)
