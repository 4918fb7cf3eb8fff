"""The public pages' rate limits, counted in the shared cache (CACHE_URL).

A limit is a rate ("20/h") of one thing (a client's address, a patient's
email) in a group. Each is counted in a fixed window of that length, which
for each thing ends at its own moment within the period (a jitter from the
thing itself, as django-ratelimit does), so that every client's hour does
not roll over at once. The counter's key holds a hash of the thing, never
the thing: an email address does not reach Redis in clear.

Several limits are counted together, in order, and the first one passed
stops the count: the reset form counts a filing against the client's
address and the patient's email at once, and a POST past the address limit
does not use up the patient's quota. On Redis (django-redis) that is one
round trip, a Lua script that increments each counter and starts its
expiry; on any other cache (local memory: the local run and the tests)
the same through Django's cache API.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache, caches
from django.http import HttpRequest
from redis.exceptions import NoScriptError

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^(\d+)/(\d*)([smhd])$")
# A counter outlives its window by this much, so that it never expires
# between being read and being counted.
EXPIRY_MARGIN_SECONDS = 5

# KEYS: the counters; ARGV: each one's limit and expiry, in turn. Counts
# each counter in order; stops after the first one past its limit.
_COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then
    redis.call('EXPIRE', key, ARGV[2 * i])
  end
  counts[i] = count
  if count > tonumber(ARGV[2 * i - 1]) then
    return counts
  end
end
return counts
"""
_COUNT_SCRIPT_SHA1 = hashlib.sha1(_COUNT_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts so


@functools.cache
def _parse_rate(rate: str) -> tuple[int, int]:
    match = _RATE.match(rate)
    if match is None:
        raise ValueError(f"{rate!r} is not a rate such as 20/h")
    count, multiple, unit = match.groups()
    return int(count), int(multiple or 1) * _PERIODS[unit]


@dataclass(frozen=True)
class Limit:
    """At most ``rate`` (``"5/h"``) of ``key`` in ``group``."""

    group: str
    key: str
    rate: str

    def parsed(self) -> tuple[int, int]:
        """(count, period in seconds)."""
        return _parse_rate(self.rate)

    def cache_key(self, now: float) -> str:
        """The counter of the window ``now`` is in."""
        _, period = self.parsed()
        thing = hashlib.sha256(f"{self.group}\0{self.key}".encode()).hexdigest()
        # The window's end: a fixed edge from the epoch, shifted by a jitter
        # of the thing's own (the same one every time).
        ts = int(now)
        end = ts - ts % period + zlib.crc32(thing.encode()) % period
        if end < ts:
            end += period
        return f"rl:{self.group}:{period}:{thing}:{end}"


def first_limit_passed(limits: Sequence[Limit]) -> Limit | None:
    """Count one more against each of ``limits``, in order; the first one
    that this passes (those after it are not counted), or None.

    Fails open: with the cache (Redis) down a patient's request is still
    taken — the outbox keeps its emails until the broker is back — rather
    than answered with a 500. The limit is a guard, not a gate."""
    allowed = [limit.parsed()[0] for limit in limits]  # a malformed rate is an error, not an outage
    try:
        counts = _count(limits)
    except Exception as exc:  # the cache backend's own errors (redis.ConnectionError …)
        logger.warning(
            "rate limit %s not checked, the cache is unavailable: %s",
            ",".join(limit.group for limit in limits),
            type(exc).__name__,
        )
        return None
    for limit, most, count in zip(limits, allowed, counts, strict=False):
        if count > most:
            return limit
    return None


def over_rate_limit(request: HttpRequest, *, group: str, key: str, rate: str) -> bool:
    """Count one more against ``key`` in ``group``; whether that is past
    ``rate`` (e.g. ``"20/h"``). Fails open, as first_limit_passed does."""
    return first_limit_passed([Limit(group, key, rate)]) is not None


def _count(limits: Sequence[Limit]) -> list[int]:
    """Each counter's count after this one, as far as the first past its limit."""
    now = time.time()
    keys = [limit.cache_key(now) for limit in limits]
    expiries = [limit.parsed()[1] + EXPIRY_MARGIN_SECONDS for limit in limits]
    client = _redis_client()
    if client is not None:
        args: list[Any] = []
        for limit, expiry in zip(limits, expiries, strict=True):
            args += [limit.parsed()[0], expiry]
        # The cache's own key names (its prefix and version), as its own calls make them.
        names = [cache.make_key(key) for key in keys]
        try:
            counts = client.evalsha(_COUNT_SCRIPT_SHA1, len(names), *names, *args)
        except NoScriptError:  # a new or restarted server: EVAL loads it
            counts = client.eval(_COUNT_SCRIPT, len(names), *names, *args)
        return [int(count) for count in counts]
    counts = []
    for limit, key, expiry in zip(limits, keys, expiries, strict=True):
        if cache.add(key, 1, expiry):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # it expired in between
                cache.add(key, 1, expiry)
                count = 1
        counts.append(count)
        if count > limit.parsed()[0]:
            break
    return counts


def _redis_client() -> Any:
    """The default cache's raw Redis client when it is django-redis, else None."""
    backend = caches["default"]
    if type(backend).__module__.startswith("django_redis"):
        return backend.client.get_client(write=True)  # type: ignore[attr-defined]
    return None
