"""Sending: a worker claims outbox rows, sends them over one SMTP connection
and marks each one, retrying the temporary failures and failing the
permanent ones."""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import smtplib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import get_connection
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..db import prepared_statement_cursor
from ..delivery_feedback import sent_message_id
from ..models import OutboundEmail, RequestEvent, ResetRequest
from ..templatetags.email_fragments import Kept, kept_fragments
from . import kept_connection, render
from .backends import DJANGO_SMTP_BACKEND, OUTBOX_SMTP_BACKEND
from .kept_connection import close_quietly
from .lease import Lease
from .publish import email_publish

logger = logging.getLogger(__name__)

# Retries back off to at most this long between two attempts.
MAX_BACKOFF_SECONDS = 1800


@dataclass(frozen=True)
class SendResult:
    state: str
    retry_in: float | None = None


def email_send_many(*, email_ids: Sequence[int]) -> dict[int, SendResult]:
    """Send outbox emails one after another over one SMTP connection, each at
    most once per claim.

    Idempotent and safe to call twice or from two workers at once: the rows
    are claimed first (claim_emails) and only the worker that claimed a row
    sends it. SMTP happens outside any transaction; a row is marked sent
    right after the server accepted its message, before the next message and
    before QUIT. An email that failed for a while comes back pending with its
    own ``retry_in``. The claims are renewed while the batch runs (lease.py);
    a claim not renewed for EMAIL_CLAIM_TIMEOUT_SECONDS belongs to a dead
    worker and may be taken again — so a worker killed after the server
    accepted a message but before marking it sent causes one duplicate
    (at-least-once).
    """
    email_ids = list(dict.fromkeys(email_ids))  # an id named twice is sent once
    # Built before anything is claimed: a backend that cannot be built
    # leaves every row as it was. The connection an earlier batch of this
    # worker process left open, if there is one (kept_connection.py).
    connection = kept_connection.take() or outbox_connection()
    try:
        claimed = claim_emails(email_ids)
    except BaseException:
        _hand_back(connection)  # the database failed: the connection is still good
        raise
    unsent = [email_id for email_id in email_ids if email_id in claimed]
    lease = Lease(unsent)
    results: dict[int, SendResult] = {}
    # What the templates render the same for every email (render.build_message):
    # kept by this process from one batch to the next.
    fragments = kept_fragments()
    deadline = timezone.now() + timedelta(seconds=settings.EMAIL_BATCH_SECONDS)
    try:
        with _mark_sent_cursor() as cursor:
            while unsent and timezone.now() < deadline and lease.may_start_another():
                results[unsent[0]] = send_claimed(claimed[unsent[0]], connection, fragments, cursor)
                lease.done(unsent.pop(0))
    finally:
        # Every row sent on this connection says so by now: only now is it
        # handed to the next batch, or QUIT. A worker that dies while it
        # idles or during QUIT leaves sent rows, not stale claims that the
        # sweeper would send a second time.
        _hand_back(connection)
        if unsent:
            # Out of time (a slow server), claims no longer renewed, or an
            # error (the database): what was claimed but not tried goes
            # back now, not after the claim timeout.
            _release(unsent)
        lease.end()
    results.update({email_id: SendResult(state=OutboundEmail.State.PENDING) for email_id in unsent})
    others = [email_id for email_id in email_ids if email_id not in claimed]
    if others:
        states = dict(OutboundEmail.objects.filter(pk__in=others).values_list("pk", "state"))
        results.update({email_id: SendResult(state=states.get(email_id, "missing")) for email_id in others})
    return {email_id: results[email_id] for email_id in email_ids}


def outbox_connection() -> Any:
    """A connection of EMAIL_BACKEND; Django's SMTP backend is replaced by
    its outbox subclass (backends.OutboxSMTPBackend: the same conversation
    with the server, minus work it repeats for every message)."""
    backend = settings.EMAIL_BACKEND
    return get_connection(OUTBOX_SMTP_BACKEND if backend == DJANGO_SMTP_BACKEND else backend, fail_silently=False)


def _hand_back(connection: Any) -> None:
    """Keep the connection for this process's next batch, or close it."""
    if not kept_connection.give_back(connection):
        close_quietly(connection)


def claimable_q() -> Q:
    """Rows a worker may claim now: pending and due (a retry waits out its
    backoff even if its task comes early), or claimed by a worker that is
    gone (stale_claims_q)."""
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
    return Q(state=OutboundEmail.State.PENDING) & due | stale_claims_q()


def stale_claims_q() -> Q:
    """Claims whose worker is gone: not renewed for EMAIL_CLAIM_TIMEOUT_SECONDS
    (a live worker renews them four times as often, lease.py)."""
    stale = timezone.now() - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT_SECONDS)
    return Q(state=OutboundEmail.State.SENDING, claimed_at__lt=stale)


def claim_emails(email_ids: Sequence[int]) -> dict[int, OutboundEmail]:
    """Claim for this worker the rows among ``email_ids`` that may be sent
    (claimable_q). Each row is claimed by one worker only: on PostgreSQL a
    row another worker is claiming is skipped (SKIP LOCKED), on SQLite the
    IMMEDIATE transaction lets one writer in at a time; the conditional
    UPDATE then takes only rows still claimable."""
    if db_connection.vendor == "postgresql":
        return _claim_in_one_statement(email_ids)
    now = timezone.now()
    claimable = claimable_q()
    with transaction.atomic():
        rows = list(
            OutboundEmail.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("reset")
            .filter(claimable, pk__in=email_ids)
        )
        if rows:
            OutboundEmail.objects.filter(claimable, pk__in=[row.pk for row in rows]).update(
                state=OutboundEmail.State.SENDING, claimed_at=now, attempts=F("attempts") + 1
            )
    for row in rows:
        row.state, row.claimed_at, row.attempts = OutboundEmail.State.SENDING, now, row.attempts + 1
    return {row.pk: row for row in rows}


def _claim_in_one_statement(email_ids: Sequence[int]) -> dict[int, OutboundEmail]:
    """claim_emails on PostgreSQL: the rows locked (SKIP LOCKED), claimed and
    read back with their requests in one prepared statement, a round trip
    instead of four (BEGIN, SELECT, UPDATE, COMMIT) and no query to build.
    A submission's task claims two rows: what the ORM's query cost to build
    and plan was most of what claiming them cost. The condition is
    claimable_q's (tests/test_submit_postgres.py compares the two)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT_SECONDS)
    pending, sending = OutboundEmail.State.PENDING, OutboundEmail.State.SENDING
    names, reset_names, sql = _claim_statement()
    with prepared_statement_cursor() as cursor:
        cursor.execute(sql, [list(email_ids), pending, now, sending, stale, sending, now])
        rows = cursor.fetchall()
    alias, claimed = db_connection.alias, {}
    for row in rows:
        outbound = OutboundEmail.from_db(alias, names, row[: len(names)])
        reset_values = row[len(names) :]
        # As select_related("reset") leaves it: the request, or None.
        outbound.reset = ResetRequest.from_db(alias, reset_names, reset_values) if reset_values[0] else None
        claimed[outbound.pk] = outbound
    return claimed


@functools.cache
def _claim_statement() -> tuple[list[str], list[str], str]:
    """The claim's statement, and the fields (attnames) of the outbox row and
    of its request, in the order it returns them."""
    quote = db_connection.ops.quote_name
    email_fields = list(OutboundEmail._meta.concrete_fields)
    reset_fields = list(ResetRequest._meta.concrete_fields)
    outbox, requests = quote(OutboundEmail._meta.db_table), quote(ResetRequest._meta.db_table)
    # Names from the models; every value is a parameter.
    sql = (
        f"WITH picked AS (SELECT id FROM {outbox} WHERE id = ANY(%s) AND ("  # noqa: S608
        "(state = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s)) OR (state = %s AND claimed_at < %s)"
        ") FOR UPDATE SKIP LOCKED), "
        f"claimed AS (UPDATE {outbox} AS o SET state = %s, claimed_at = %s, attempts = o.attempts + 1 "
        "FROM picked WHERE o.id = picked.id RETURNING o.*) "
        f"SELECT {', '.join('claimed.' + quote(f.column) for f in email_fields)}, "
        f"{', '.join('r.' + quote(f.column) for f in reset_fields)} "
        f"FROM claimed LEFT JOIN {requests} AS r ON r.id = claimed.reset_id ORDER BY claimed.id"
    )
    return [f.attname for f in email_fields], [f.attname for f in reset_fields], sql


def _release(email_ids: Sequence[int]) -> None:
    """Give back rows this worker claimed but never tried to send: pending,
    the attempt not counted, and queued again at once. A failure here (the
    database is down) is logged: the claims then run out and the sweeper
    queues the rows."""
    try:
        OutboundEmail.objects.filter(pk__in=email_ids, state=OutboundEmail.State.SENDING).update(
            state=OutboundEmail.State.PENDING, claimed_at=None, attempts=F("attempts") - 1
        )
    except Exception as exc:
        logger.warning("could not give back %s claimed emails: %s", len(email_ids), type(exc).__name__)
        return
    logger.info("%s claimed emails not sent in this batch, queued again", len(email_ids))
    email_publish(email_ids=email_ids)


def send_claimed(
    outbound: OutboundEmail, connection: Any, fragments: Kept | None = None, cursor: Any = None
) -> SendResult:
    """Send one row this worker claimed and mark it sent (with ``cursor``,
    the batch's _mark_sent_cursor, if given), or hand the failure to
    _failed."""
    try:
        message = render.build_message(outbound, fragments)
        message.connection = connection
        # Opened here (unless already open), the backend keeps the
        # connection open after sending.
        connection.open()
        message.send(fail_silently=False)
    except Exception as exc:
        # What the server made of the conversation is unknown: the next
        # message starts on a new connection.
        close_quietly(connection)
        return _failed(outbound, exc)

    _mark_sent(outbound, sent_at=timezone.now(), cursor=cursor, provider_message_id=sent_message_id(message))
    logger.info("email sent id=%s kind=%s attempts=%s", outbound.pk, outbound.kind, outbound.attempts)
    return SendResult(state=OutboundEmail.State.SENT)


def _mark_sent_cursor() -> Any:
    """The cursor a batch marks its rows sent with, on PostgreSQL: one for
    the batch (a cursor per email cost as much as a tenth of its sending);
    elsewhere none (_mark_sent uses the ORM)."""
    return prepared_statement_cursor() if db_connection.vendor == "postgresql" else contextlib.nullcontext()


def _mark_sent(outbound: OutboundEmail, *, sent_at: datetime, cursor: Any = None, **columns: Any) -> None:
    """The one place a sent row is marked: ``sent``, its error cleared, any
    other ``columns`` of the row set (as the backend reported the message),
    and an EMAIL_SENT event (no actor: the system) on its request's
    timeline — atomically, and only while the row is still this worker's
    claim. On PostgreSQL one statement, a round trip of its own instead of
    four (BEGIN, UPDATE, INSERT, COMMIT): what it cost per email was most
    of the worker's database time; and prepared (requests_app/db.py), so
    planned once per connection rather than once per email."""
    values = {"state": OutboundEmail.State.SENT, "sent_at": sent_at, "last_error": "", **columns}
    event = outbound.get_kind_display()
    if db_connection.vendor != "postgresql":
        with transaction.atomic():
            marked = OutboundEmail.objects.filter(pk=outbound.pk, state=OutboundEmail.State.SENDING).update(**values)
            if marked and outbound.reset is not None:
                RequestEvent.objects.record(outbound.reset, RequestEvent.Kind.EMAIL_SENT, message=event, at=sent_at)
        return
    fields, sql = _mark_sent_statement(tuple(values))
    params = [
        *(field.get_db_prep_save(values[field.name], db_connection) for field in fields),
        outbound.pk,
        OutboundEmail.State.SENDING,
        RequestEvent.Kind.EMAIL_SENT,
        event,
        sent_at,
    ]
    if cursor is not None:
        cursor.execute(sql, params)
        return
    with prepared_statement_cursor() as own_cursor:
        own_cursor.execute(sql, params)


@functools.lru_cache(maxsize=8)
def _mark_sent_statement(names: tuple[str, ...]) -> tuple[list[Any], str]:
    """_mark_sent's fields and statement on PostgreSQL for the columns
    ``names``: the same for every email, so written once."""
    concrete = {field.name: field for field in OutboundEmail._meta.concrete_fields}
    fields = [concrete[name] for name in names]
    quote = db_connection.ops.quote_name
    # Names from the models; every value is a parameter.
    sql = (
        f"WITH sent AS (UPDATE {quote(OutboundEmail._meta.db_table)} "  # noqa: S608
        f"SET {', '.join(f'{quote(field.column)} = %s' for field in fields)} "
        "WHERE id = %s AND state = %s RETURNING reset_id) "
        f"INSERT INTO {quote(RequestEvent._meta.db_table)} "
        "(reset_id, kind, actor_id, from_status, to_status, message, created_at) "
        "SELECT reset_id, %s, NULL, '', '', %s, %s FROM sent WHERE reset_id IS NOT NULL"
    )
    return fields, sql


def backoff_seconds(attempts: int) -> float:
    """Exponential with jitter: ~EMAIL_RETRY_BASE_SECONDS (30 s), then twice
    as long each time, capped at 30 minutes."""
    base = settings.EMAIL_RETRY_BASE_SECONDS
    return random.uniform(0.5, 1.0) * min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)


def is_transient(exc: Exception) -> bool:
    """Whether trying again later may succeed: a 4xx reply, a dropped or
    refused connection, a time-out. A 5xx reply is permanent. Through an
    email provider's API (EMAIL_PROVIDER), as _provider_may_take_it_later
    says."""
    if isinstance(exc, SoftTimeLimitExceeded):
        # The task ran out of time mid-send: whether the server took the
        # message is unknown, so it is tried again (at least once).
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(exc, AnymailRecipientsRefused):
        return False  # the provider refused the address (delivery_feedback marks the request)
    if isinstance(exc, AnymailAPIError):
        return _provider_may_take_it_later(exc)
    return isinstance(
        exc,
        (
            smtplib.SMTPServerDisconnected,
            smtplib.SMTPConnectError,
            ConnectionError,
            socket.timeout,
            TimeoutError,
            OSError,
        ),
    )


# HTTP's 4xx answers that mean "not now" rather than "not this message".
_HTTP_NOT_NOW = frozenset({408, 425, 429})
# AWS's names for "slow down" (Amazon SES through boto3), with a 400 or a 429.
_PROVIDER_NOT_NOW = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException"})


def _provider_may_take_it_later(exc: AnymailAPIError) -> bool:
    """A provider's API call that failed: permanent only when the provider
    answered that this message cannot be sent (a 4xx other than a time-out
    or a rate limit: an invalid payload, a refused sender, wrong
    credentials). Its own errors (5xx), a rate limit, no answer at all (a
    connection error, a time-out) and an answer that could not be read
    (the provider may have taken the message: at least once) are tried
    again. Amazon SES's errors come from boto3 (no status of anymail's):
    the status and the error's name are read from its response."""
    status, code = exc.status_code, None
    response = getattr(exc, "response", None)
    if status is None and isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = response.get("Error", {}).get("Code")
    if code in _PROVIDER_NOT_NOW or status is None:
        return True
    return not (400 <= int(status) < 500) or int(status) in _HTTP_NOT_NOW


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"[:500]
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
        return f"{code} {_text(reply)}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _failed(outbound: OutboundEmail, exc: Exception) -> SendResult:
    """Release the claim: back to pending with a backoff when the failure is
    temporary and attempts remain, otherwise failed for staff to see."""
    error = _describe_error(exc)
    now = timezone.now()
    if is_transient(exc) and outbound.attempts < settings.EMAIL_MAX_ATTEMPTS:
        delay = backoff_seconds(outbound.attempts)
        OutboundEmail.objects.filter(pk=outbound.pk, state=OutboundEmail.State.SENDING).update(
            state=OutboundEmail.State.PENDING,
            last_error=error,
            next_attempt_at=now + timedelta(seconds=delay),
        )
        logger.warning("email id=%s attempt %s failed, retrying in %.0fs", outbound.pk, outbound.attempts, delay)
        return SendResult(state=OutboundEmail.State.PENDING, retry_in=delay)

    with transaction.atomic():
        OutboundEmail.objects.filter(pk=outbound.pk, state=OutboundEmail.State.SENDING).update(
            state=OutboundEmail.State.FAILED, last_error=error
        )
        if outbound.reset is not None:
            RequestEvent.objects.record(
                outbound.reset,
                RequestEvent.Kind.EMAIL_FAILED,
                message=f"{outbound.get_kind_display()}: {error} (after {outbound.attempts} attempts)",
                at=now,
            )
    logger.error("email id=%s failed for good after %s attempts", outbound.pk, outbound.attempts)
    return SendResult(state=OutboundEmail.State.FAILED)
