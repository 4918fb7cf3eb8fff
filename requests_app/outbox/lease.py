"""Claims that last as long as the worker holding them lives.

A worker that claimed outbox rows renews its claims (``claimed_at`` set to
now) every quarter of EMAIL_CLAIM_TIMEOUT_SECONDS from a thread of its own,
so the renewal goes on while the sending thread waits on a slow SMTP server.
A claim not renewed for EMAIL_CLAIM_TIMEOUT_SECONDS belongs to a worker that
is gone (killed, out of memory, its machine lost): any worker may take it
(send.claimable_q), and the sweeper and every worker that starts queue it
again (sweep.py). A live worker cannot hold a claim for ever: the task's
hard time limit kills the process that hangs, and its heartbeat with it.

The heartbeat runs only in worker processes (portal_reset/celery.py turns
it on); elsewhere (the tests' eager tasks, a management command) a claim is
not renewed and nothing else changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import connection
from django.utils import timezone

from ..models import OutboundEmail

logger = logging.getLogger(__name__)


def heartbeat_seconds() -> float:
    """How often a worker renews its claims: four times per claim timeout,
    so a claim survives a beat or two that came late."""
    return settings.EMAIL_CLAIM_TIMEOUT_SECONDS / 4


class _Heartbeat:
    """One per worker process: renews every claim the process holds, with
    one UPDATE per beat on a database connection of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # email id -> leases holding it
        self._renewed_at = 0.0  # time.time() before the last UPDATE that worked
        self._pid = 0
        self._thread: threading.Thread | None = None

    def hold(self, email_ids: Iterable[int]) -> None:
        with self._lock:
            for email_id in email_ids:
                self._held[email_id] = self._held.get(email_id, 0) + 1
            if self._pid != os.getpid():  # first use in this (forked) process
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="outbox-heartbeat", daemon=True)
                self._thread.start()

    def drop(self, email_ids: Iterable[int]) -> None:
        with self._lock:
            for email_id in email_ids:
                left = self._held.pop(email_id, 0) - 1
                if left > 0:
                    self._held[email_id] = left

    @property
    def renewed_at(self) -> float:
        return self._renewed_at

    def _run(self) -> None:
        while True:
            time.sleep(heartbeat_seconds())
            # Read before the rows are: a claim taken after this moment is
            # not renewed by this beat, so the beat does not vouch for it.
            started = time.time()
            with self._lock:
                held = list(self._held)
            if held:
                self._renew(held, started)

    def _renew(self, email_ids: list[int], started: float) -> None:
        try:
            # This thread's own connection, kept between beats; one that
            # broke (the database restarted) is replaced on the next beat.
            connection.close_if_unusable_or_obsolete()
            OutboundEmail.objects.filter(pk__in=email_ids, state=OutboundEmail.State.SENDING).update(
                claimed_at=timezone.now()
            )
        except Exception as exc:
            logger.warning("could not renew the claims on %s emails: %s", len(email_ids), type(exc).__name__)
            with contextlib.suppress(Exception):  # the next beat opens a new one
                connection.close()
            return
        self._renewed_at = started


_heartbeat: _Heartbeat | None = None


def heartbeat_enable() -> None:
    """Renew the claims this process takes from now on (a worker process
    calls it as it starts)."""
    global _heartbeat
    if _heartbeat is None:
        _heartbeat = _Heartbeat()


class Lease:
    """The claims on one batch, renewed by the process's heartbeat until
    each row is done with."""

    def __init__(self, email_ids: Iterable[int]):
        self._ids = set(email_ids)
        self._taken_at = time.time()
        self._heartbeat = _heartbeat
        if self._heartbeat is not None and self._ids:
            self._heartbeat.hold(self._ids)

    def done(self, email_id: int) -> None:
        """This row is no longer claimed by us (sent, failed or given back)."""
        if email_id in self._ids:
            self._ids.discard(email_id)
            if self._heartbeat is not None:
                self._heartbeat.drop([email_id])

    def end(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.drop(self._ids)
        self._ids = set()

    def may_start_another(self) -> bool:
        """Whether the claims are surely still ours: renewed (or taken)
        within half the claim timeout. Past that the heartbeat is failing
        (the database is out of reach), and soon another worker may take
        these rows: better to start no new email than to send one twice.
        Wall-clock time, as other workers judge a claim (claimed_at)."""
        if self._heartbeat is None:
            return True
        renewed = max(self._taken_at, self._heartbeat.renewed_at)
        return time.time() - renewed < settings.EMAIL_CLAIM_TIMEOUT_SECONDS / 2
