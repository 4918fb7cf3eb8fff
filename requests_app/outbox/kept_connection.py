"""The SMTP connection a worker process keeps from one batch to the next.

A submission's batch is two emails (the acknowledgment and the staff
notice): opening a connection for it (TCP, the greeting, EHLO, STARTTLS and
AUTH with a real relay) and saying QUIT after cost more than sending them.
So a worker process hands its connection back after a batch instead of
closing it, and the next batch, if it comes within EMAIL_SMTP_IDLE_SECONDS
(10 s), asks the server for a NOOP and sends on it. Otherwise a thread of
the process says QUIT once the connection has been idle that long.

What the delivery guarantee rests on does not change: every row sent on a
connection is marked sent before the connection is handed back, so a
worker that dies while its connection idles, or during its QUIT, leaves
sent rows, never claims that would be sent again. A connection that failed
is closed as before (send.send_claimed) and never handed back; one that
does not answer its NOOP is closed and a new one opened, so a server that
dropped it costs the next batch nothing but the new connection. A
connection carries no more messages in all than EMAIL_BATCH_SIZE, as many
as one batch already may, so a server that limits messages per connection
sees nothing new.

Only the outbox's SMTP backend is kept, only in worker processes
(portal_reset/celery.py turns it on), and only for the settings it was
opened with; elsewhere (the tests' eager tasks, a management command) every
batch opens and closes its own, as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.conf import settings

from .backends import OutboxSMTPBackend

logger = logging.getLogger(__name__)


def close_quietly(connection: Any) -> None:
    """Close an email backend's connection; a failure to say QUIT changes
    nothing."""
    try:
        connection.close()
    except Exception as exc:
        logger.warning("closing the SMTP connection failed: %s", type(exc).__name__)


def _settings_key() -> tuple[Any, ...]:
    """What an SMTP backend is opened with: a kept connection opened with
    other values (the settings changed) is not used."""
    return (
        settings.EMAIL_HOST,
        settings.EMAIL_PORT,
        settings.EMAIL_HOST_USER,
        settings.EMAIL_HOST_PASSWORD,
        settings.EMAIL_USE_TLS,
        settings.EMAIL_USE_SSL,
        settings.EMAIL_TIMEOUT,
        settings.EMAIL_SSL_KEYFILE,
        settings.EMAIL_SSL_CERTFILE,
    )


class _Keeper:
    """One per worker process: at most one idle connection, and the thread
    that closes it once it has been idle for EMAIL_SMTP_IDLE_SECONDS."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._kept: OutboxSMTPBackend | None = None
        self._key: tuple[Any, ...] = ()
        self._idle_since = 0.0  # time.monotonic()
        self._pid = 0

    def take(self) -> OutboxSMTPBackend | None:
        """The kept connection if it is still good for these settings and
        answers a NOOP; otherwise None (and it is closed)."""
        with self._changed:
            kept, self._kept = self._kept, None
            key, idle_since = self._key, self._idle_since
        if kept is None:
            return None
        if key != _settings_key() or time.monotonic() - idle_since >= settings.EMAIL_SMTP_IDLE_SECONDS:
            close_quietly(kept)
            return None
        try:
            assert kept.connection is not None  # handed back open (give_back)
            code, _ = kept.connection.noop()
        except Exception as exc:
            logger.info("the kept SMTP connection is gone (%s): opening a new one", type(exc).__name__)
            code = 0
        if code != 250:
            close_quietly(kept)
            return None
        return kept

    def give_back(self, connection: Any) -> bool:
        """Keep ``connection`` for the next batch; False (not kept: the
        caller closes it) unless it is the outbox's SMTP backend, open, and
        has room for another batch."""
        if (
            type(connection) is not OutboxSMTPBackend
            or connection.connection is None
            or connection.messages_sent >= settings.EMAIL_BATCH_SIZE
        ):
            return False
        with self._changed:
            if self._kept is not None:
                return False  # another thread's batch kept one first
            self._kept, self._key, self._idle_since = connection, _settings_key(), time.monotonic()
            if self._pid != os.getpid():  # first use in this (forked) process
                self._pid = os.getpid()
                threading.Thread(target=self._close_when_idle, name="outbox-smtp-idle", daemon=True).start()
            self._changed.notify()
        return True

    def close(self) -> None:
        """Close the kept connection now, if there is one."""
        with self._changed:
            kept, self._kept = self._kept, None
        if kept is not None:
            close_quietly(kept)

    def _close_when_idle(self) -> None:
        while True:
            with self._changed:
                while self._kept is None:
                    self._changed.wait()
                left = self._idle_since + settings.EMAIL_SMTP_IDLE_SECONDS - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                idle, self._kept = self._kept, None
            # Outside the lock: a server slow to answer QUIT holds up no batch.
            close_quietly(idle)


_keeper: _Keeper | None = None


def keeping_enable() -> None:
    """Keep SMTP connections between batches in this process from now on
    (a worker process calls it as it starts), unless EMAIL_SMTP_IDLE_SECONDS
    is 0."""
    global _keeper
    if _keeper is None and settings.EMAIL_SMTP_IDLE_SECONDS > 0:
        _keeper = _Keeper()


def keeping_disable() -> None:
    """Close the kept connection, if any, and keep none from now on."""
    global _keeper
    keeper, _keeper = _keeper, None
    if keeper is not None:
        keeper.close()


def take() -> OutboxSMTPBackend | None:
    """The connection an earlier batch of this process left open, if it can
    still be used; None if there is none (or keeping is off)."""
    return _keeper.take() if _keeper is not None else None


def give_back(connection: Any) -> bool:
    """Hand a batch's connection over to the next batch; False if it was not
    kept, and the caller closes it."""
    return _keeper.give_back(connection) if _keeper is not None else False
