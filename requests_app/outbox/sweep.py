"""The sweeper (beat, every minute): rows whose message was lost go out again."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..models import OutboundEmail
from .publish import publish_by_queue

logger = logging.getLogger(__name__)

# Rows queued again per sweep, oldest first; the next sweep takes the rest.
SWEEP_BATCH = 500


def outbox_sweep(*, grace_seconds: int = 60) -> int:
    """Queue again every email that is pending past its next attempt time
    (the broker was down, or a retry was lost), and every claim a dead
    worker left behind. Safe to run from two schedulers at once: sending
    claims the row, so a row queued twice is sent once."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT_SECONDS)
    # The grace period leaves freshly queued rows to their on-commit publish.
    due = (
        OutboundEmail.objects.filter(
            Q(
                state=OutboundEmail.State.PENDING,
                next_attempt_at__lte=now - timedelta(seconds=grace_seconds),
            )
            | Q(state=OutboundEmail.State.SENDING, claimed_at__lt=stale)
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", "kind")[:SWEEP_BATCH]
    )
    count = publish_by_queue(list(due))
    if count:
        logger.info("outbox sweep queued %s emails", count)
    return count
