"""The public pages' rate limits, counted in the shared cache (CACHE_URL)."""

from __future__ import annotations

import logging

from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited

logger = logging.getLogger(__name__)


def over_rate_limit(request: HttpRequest, *, group: str, key: str, rate: str) -> bool:
    """Count one more against ``key`` in ``group``; whether that is past
    ``rate`` (e.g. ``"20/h"``).

    Fails open: with the cache (Redis) down a patient's request is still
    taken — the outbox keeps its emails until the broker is back — rather
    than answered with a 500. The limit is a guard, not a gate."""
    try:
        return is_ratelimited(request, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
    except Exception as exc:  # the cache backend's own errors (redis.ConnectionError …)
        logger.warning("rate limit %s not checked, the cache is unavailable: %s", group, type(exc).__name__)
        return False
