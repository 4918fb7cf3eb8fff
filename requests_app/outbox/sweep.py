"""The sweeper (beat, every minute): rows whose message was lost go out again.
And the same when a worker starts (outbox_recover): what a worker that died
left behind goes out within seconds, not after the broker's visibility
timeout."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..models import OutboundEmail
from .publish import publish_by_queue
from .send import stale_claims_q

logger = logging.getLogger(__name__)

# Rows queued again per sweep, oldest first; the next sweep takes the rest.
SWEEP_BATCH = 500


def outbox_sweep(*, grace_seconds: int = 60, claims_only: bool = False) -> int:
    """Queue again every email that is pending past its next attempt time
    (the broker was down, or a retry was lost), and every claim a dead
    worker left behind (not renewed for EMAIL_CLAIM_TIMEOUT_SECONDS); only
    those with ``claims_only``. Safe to run from two schedulers at
    once: sending claims the row, so a row queued twice is sent once."""
    now = timezone.now()
    # The grace period leaves freshly queued rows to their on-commit publish.
    lost = Q(state=OutboundEmail.State.PENDING, next_attempt_at__lte=now - timedelta(seconds=grace_seconds))
    due = (
        OutboundEmail.objects.filter(stale_claims_q() if claims_only else lost | stale_claims_q())
        .order_by("next_attempt_at", "pk")
        .values_list("pk", "kind")[:SWEEP_BATCH]
    )
    count = publish_by_queue(list(due))
    if count:
        logger.info("outbox sweep queued %s emails", count)
    return count


def outbox_recover(*, sleep: Callable[[float], object] = time.sleep) -> int:
    """What a worker runs as it starts (portal_reset/celery.py): queue again
    the emails a worker that died left behind, so they go out within
    EMAIL_CLAIM_TIMEOUT_SECONDS or so of a new worker starting, not when the
    broker gives back the dead worker's messages (after its visibility
    timeout, an hour) or at beat's next sweep.

    Two sweeps. At once: the claims already stale, and every pending row
    that is due, whatever its age — a dead worker's messages may have named
    rows it had not claimed yet, and a row queued twice is still sent once.
    Then, once EMAIL_CLAIM_TIMEOUT_SECONDS have passed: the claims a worker
    killed just before this one started was still renewing; a claim that no
    one renewed since this worker started is stale by then."""
    count = _sweep_or_log(grace_seconds=0)
    sleep(settings.EMAIL_CLAIM_TIMEOUT_SECONDS + 1)
    return count + _sweep_or_log(claims_only=True)


def _sweep_or_log(**options: Any) -> int:
    try:
        return outbox_sweep(**options)
    except Exception as exc:
        # The database is out of reach: beat's sweep finds these rows later.
        logger.warning("outbox recovery sweep failed: %s", type(exc).__name__)
        return 0
