"""Every write of the application: submit, move, assign, note, email.

Each function is atomic, records its timeline event with the acting user in
the same transaction, and queues side effects (emails) only after commit.
Callers (views, admin, tasks, commands) never set ``status`` themselves.
"""

from __future__ import annotations

import logging
import random
import smtplib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Optional

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import get_connection
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.views.decorators.debug import sensitive_variables

from . import emails
from .models import (
    FamilyMember,
    OutboundEmail,
    RequestEvent,
    ResetRequest,
    new_reference,
)
from .practice_time import practice_day_start, practice_today
from .selectors import requests_overdue

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Status = ResetRequest.Status
# The staff member acting, or None for the system (beat, a patient's form).
Actor = Optional["User"]


# --- Domain errors ----------------------------------------------------------


class WorkflowError(Exception):
    """A change the workflow does not allow; the message is for staff."""


class TransitionNotAllowed(WorkflowError):
    pass


class ConcurrentChange(WorkflowError):
    """Someone else changed the request first; nothing was written."""


class IdentityNotVerified(WorkflowError):
    pass


# --- The 48-hour window -----------------------------------------------------


def access_window_ends(appointment_date: date) -> datetime:
    """When the invitation link of a visit on ``appointment_date`` has
    surely expired: ACCESS_LINK_HOURS after the start of that day in the
    practice's time zone."""
    day_start = practice_day_start(appointment_date)
    # Arithmetic on an aware datetime moves the wall clock, not elapsed time:
    # count real hours in UTC, or a clock change shifts the window by an hour.
    return (day_start.astimezone(UTC) + timedelta(hours=settings.ACCESS_LINK_HOURS)).astimezone(day_start.tzinfo)


# --- Timeline ---------------------------------------------------------------


def _record(
    request: ResetRequest,
    kind: str,
    *,
    actor: Actor = None,
    from_status: str = "",
    to_status: str = "",
    message: str = "",
    at: datetime | None = None,
) -> RequestEvent:
    return RequestEvent.objects.create(
        request=request,
        kind=kind,
        actor=actor,
        from_status=from_status,
        to_status=to_status,
        message=message,
        created_at=at or timezone.now(),
    )


# --- Submission -------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A patient's validated form, as forms.py hands it over."""

    first_name: str
    last_name: str
    date_of_birth: date
    email: str
    phone: str
    appointment_date: date
    reason: str
    details: str = ""
    family: tuple[tuple[str, str, date], ...] = ()
    # The language the patient used the site in: their emails are in it.
    language: str = "en"


@dataclass(frozen=True)
class SubmitResult:
    request: ResetRequest
    created: bool


# Error reports show no local variable of this call or of anything it calls.
@sensitive_variables()
def request_submit(*, submission: Submission) -> SubmitResult:
    """File a reset request, or attach it to the patient's open one.

    Atomic: the request, its first event and its acknowledgment (plus the
    staff notification) are stored together or not at all; the emails are
    queued after commit. A second submission with the same email and date of
    birth while a request is open is recorded on that request's timeline and
    gets a fresh acknowledgment, so the caller cannot tell the two apart.
    """
    for _ in range(5):
        try:
            with transaction.atomic():
                return _submit_once(submission)
        except IntegrityError:
            # Either a reference collision (about 1 in 10^11) or a concurrent
            # first submission by the same patient won the race: try again,
            # which attaches to that one.
            continue
    raise RuntimeError("Could not store the reset request after 5 attempts.")


def _submit_once(submission: Submission) -> SubmitResult:
    now = timezone.now()
    existing = (
        ResetRequest.objects.select_for_update()
        .filter(email=submission.email, date_of_birth=submission.date_of_birth, is_open=True)
        .first()
    )
    language = _patient_language(submission.language)
    if existing is not None:
        if existing.language != language:
            # The fresh acknowledgment (and later emails) follow the language
            # the patient used last.
            ResetRequest.objects.filter(pk=existing.pk).update(language=language)
            existing.language = language
        email_queue_many(
            messages=[(existing, OutboundEmail.Kind.ACKNOWLEDGMENT, existing.email)],
            also_record=[
                RequestEvent(
                    request=existing, kind=RequestEvent.Kind.DUPLICATE, message=_describe(submission), created_at=now
                )
            ],
        )
        return SubmitResult(request=existing, created=False)

    request = ResetRequest.objects.create(
        reference=new_reference(),
        first_name=submission.first_name,
        last_name=submission.last_name,
        date_of_birth=submission.date_of_birth,
        email=submission.email,
        phone=submission.phone,
        appointment_date=submission.appointment_date,
        reason=submission.reason,
        details=submission.details,
        language=language,
        submitted_at=now,
        due_at=now + timedelta(hours=settings.RESET_SLA_HOURS),
    )
    FamilyMember.objects.bulk_create(
        FamilyMember(request=request, first_name=first, last_name=last, date_of_birth=dob)
        for first, last, dob in submission.family
    )
    # Both emails in one go: one insert for the rows, one for every event
    # (the "submitted" one first).
    email_queue_many(
        messages=[
            (request, OutboundEmail.Kind.ACKNOWLEDGMENT, request.email),
            (request, OutboundEmail.Kind.STAFF_NEW_REQUEST, settings.STAFF_NOTIFY_EMAIL),
        ],
        also_record=[
            RequestEvent(request=request, kind=RequestEvent.Kind.SUBMITTED, to_status=Status.NEW, created_at=now)
        ],
    )
    logger.info("reset request submitted reference=%s", request.reference)
    return SubmitResult(request=request, created=True)


def _patient_language(code: str) -> str:
    return code if code in dict(settings.LANGUAGES) else "en"


def _describe(submission: Submission) -> str:
    """What a repeated submission said, for staff on the timeline (in
    English, whatever language the patient used)."""
    with translation.override("en"):
        reason = str(ResetRequest.Reason(submission.reason).label)
    lines = [
        f"Name: {submission.first_name} {submission.last_name}",
        f"Phone: {submission.phone}",
        f"Appointment: {submission.appointment_date.isoformat()}",
        f"Reason: {reason}",
    ]
    lines += [f"Family member: {first} {last} ({dob.isoformat()})" for first, last, dob in submission.family]
    if submission.details:
        lines.append(f"Details: {submission.details}")
    return "\n".join(lines)


# --- Status moves -----------------------------------------------------------


def _move(
    *,
    request_id: int,
    to_status: str,
    actor: Actor,
    fields: dict[str, Any] | None = None,
    message: str = "",
    expected_status: str | None = None,
    claim: Q | None = None,
) -> ResetRequest:
    """Move one request to ``to_status`` if the workflow allows it.

    The write is a conditional UPDATE on the status read just before, so of
    two staff acting at once exactly one wins; the other gets
    ConcurrentChange and nothing is written for them. ``claim`` adds to the
    UPDATE's condition what else must not have changed since that read.
    """
    now = timezone.now()
    request = ResetRequest.objects.get(pk=request_id)
    current = request.status
    if expected_status is not None and current != expected_status:
        raise ConcurrentChange(
            f"{request.reference} was changed by someone else; it is now {request.get_status_display().lower()}."
        )
    if not request.can_move_to(to_status):
        raise TransitionNotAllowed(
            f"{request.reference} cannot go from {request.get_status_display().lower()} "
            f"to {ResetRequest.Status(to_status).label.lower()}."
        )
    changes: dict[str, Any] = dict(fields or {})
    changes["status"] = to_status
    changes["is_open"] = to_status in ResetRequest.OPEN_STATUSES
    changes["updated_at"] = now
    if current == Status.WAITING and request.waiting_since is not None:
        # The due clock does not run while the request waits on the patient.
        changes["due_at"] = request.due_at + (now - request.waiting_since)
        changes["waiting_since"] = None
    if to_status == Status.WAITING:
        changes["waiting_since"] = now
    if not changes["is_open"]:
        changes["ended_at"] = now
    with transaction.atomic():
        claimed = ResetRequest.objects.filter(Q(pk=request_id, status=current), claim or Q()).update(**changes)
        if claimed != 1:
            raise ConcurrentChange(
                f"{request.reference} was changed by someone else at the same time; nothing was saved."
            )
        request.refresh_from_db()
        _record(
            request,
            RequestEvent.Kind.STATUS,
            actor=actor,
            from_status=current,
            to_status=to_status,
            message=message,
            at=now,
        )
        if to_status == Status.RESOLVED:
            email_queue(request=request, kind=OutboundEmail.Kind.RESOLVED, to=request.email)
        elif to_status == Status.CLOSED and request.close_reason != ResetRequest.CloseReason.SPAM:
            email_queue(request=request, kind=OutboundEmail.Kind.CLOSED, to=request.email)
    logger.info("reset request %s moved %s -> %s", request.reference, current, to_status)
    return request


def request_start(*, request_id: int, actor: Actor, expected_status: str | None = None) -> ResetRequest:
    """new → in progress, or waiting → in progress (the patient answered).
    Starting an unassigned request assigns it to the one who starts it,
    in the same transaction as the move and its events."""
    with transaction.atomic():
        request = ResetRequest.objects.only("assignee_id").get(pk=request_id)
        fields: dict[str, Any] = {}
        claim = None
        if request.assignee_id is None and actor is not None:
            fields["assignee"] = actor
            # Only if nobody took it since the read above: someone's "assign
            # to me" in between must not be overwritten behind their back.
            claim = Q(assignee__isnull=True)
        moved = _move(
            request_id=request_id,
            to_status=Status.IN_PROGRESS,
            actor=actor,
            fields=fields,
            expected_status=expected_status,
            claim=claim,
        )
        if "assignee" in fields:
            _record(
                moved,
                RequestEvent.Kind.ASSIGNED,
                actor=actor,
                message=f"Assigned to {_name(actor)}",
            )
    return moved


def request_wait(*, request_id: int, actor: Actor, note: str = "", expected_status: str | None = None) -> ResetRequest:
    """in progress → waiting on the patient; the due clock pauses."""
    return _move(
        request_id=request_id,
        to_status=Status.WAITING,
        actor=actor,
        message=note,
        expected_status=expected_status,
    )


def request_resolve(
    *,
    request_id: int,
    actor: Actor,
    outcome: str,
    note: str = "",
    expected_status: str | None = None,
) -> ResetRequest:
    """in progress → resolved. Needs an outcome and a recorded identity
    check; queues the resolution email to the patient."""
    if outcome not in ResetRequest.Outcome.values:
        raise WorkflowError("Choose the outcome of the reset.")
    request = ResetRequest.objects.get(pk=request_id)
    # A request that cannot be resolved at all (closed, new…) says so, rather
    # than asking for an identity check that could not be recorded anyway.
    if request.identity_verified_at is None and request.can_move_to(Status.RESOLVED):
        raise IdentityNotVerified(f"Record the identity check of {request.reference} before resolving it.")
    return _move(
        request_id=request_id,
        to_status=Status.RESOLVED,
        actor=actor,
        fields={"outcome": outcome},
        message=note,
        expected_status=expected_status,
    )


def request_close(
    *,
    request_id: int,
    actor: Actor,
    reason: str,
    note: str = "",
    expected_status: str | None = None,
) -> ResetRequest:
    """Any open status → closed, with a reason. Queues the closure email,
    except for spam."""
    if reason not in ResetRequest.CloseReason.values:
        raise WorkflowError("Choose why the request is closed.")
    return _move(
        request_id=request_id,
        to_status=Status.CLOSED,
        actor=actor,
        fields={"close_reason": reason},
        message=note,
        expected_status=expected_status,
    )


# --- Assignment, identity check, notes, views -------------------------------


def _name(user: Actor) -> str:
    if user is None:
        return "nobody"
    full = getattr(user, "get_full_name", lambda: "")()
    return full or user.get_username()


_ANY = object()


def request_assign(
    *,
    request_id: int,
    assignee: Actor,
    actor: Actor,
    expected_status: str | None = None,
    expected_assignee_id: Any = _ANY,
) -> ResetRequest:
    """Give an open request to ``assignee`` (None: unassign). Atomic; with
    ``expected_status`` / ``expected_assignee_id`` (what the staff member's
    page showed) it raises ConcurrentChange if someone got there first."""
    with transaction.atomic():
        # The row lock makes the check and the write one step.
        request = ResetRequest.objects.select_for_update().get(pk=request_id)
        if (expected_status is not None and request.status != expected_status) or (
            expected_assignee_id is not _ANY and request.assignee_id != expected_assignee_id
        ):
            raise ConcurrentChange(f"{request.reference} was changed by someone else; nothing was saved.")
        if not request.is_open:
            raise TransitionNotAllowed(f"{request.reference} has ended; it cannot be reassigned.")
        new_id = assignee.pk if assignee is not None else None
        if request.assignee_id == new_id:
            return request
        request.assignee = assignee  # type: ignore[assignment]
        request.save(update_fields=["assignee", "updated_at"])
        _record(request, RequestEvent.Kind.ASSIGNED, actor=actor, message=f"Assigned to {_name(assignee)}")
    return request


def request_resend_acknowledgment(*, request_id: int, actor: Actor) -> OutboundEmail:
    """Queue the acknowledgment again for an open request (the patient lost
    it): a new outbox row, never an edit of the old one. Atomic."""
    with transaction.atomic():
        request = ResetRequest.objects.select_for_update().get(pk=request_id)
        if not request.is_open:
            raise TransitionNotAllowed(f"{request.reference} has ended; no acknowledgment is sent.")
        return email_queue(request=request, kind=OutboundEmail.Kind.ACKNOWLEDGMENT, to=request.email, actor=actor)


def request_record_identity_check(
    *, request_id: int, actor: Actor, dob: bool, phone: bool, email: bool
) -> ResetRequest:
    """Record which identifiers matched the chart, who checked and when.
    The date of birth and one more identifier must match."""
    if not (dob and (phone or email)):
        raise IdentityNotVerified(
            "Identity is verified when the date of birth and at least one more identifier "
            "(phone or email) match the chart."
        )
    now = timezone.now()
    with transaction.atomic():
        request = ResetRequest.objects.select_for_update().get(pk=request_id)
        if not request.is_open:
            raise TransitionNotAllowed(f"{request.reference} has ended.")
        request.identity_dob_matched = dob
        request.identity_phone_matched = phone
        request.identity_email_matched = email
        request.identity_verified_by = actor  # type: ignore[assignment]
        request.identity_verified_at = now
        request.save()
        matched = ", ".join(name for name, ok in (("date of birth", dob), ("phone", phone), ("email", email)) if ok)
        _record(
            request,
            RequestEvent.Kind.IDENTITY,
            actor=actor,
            message=f"Matched the chart: {matched}",
            at=now,
        )
    return request


def request_add_note(*, request_id: int, actor: Actor, text: str) -> RequestEvent:
    """An internal note on the timeline; patients never see notes."""
    text = text.strip()
    if not text:
        raise WorkflowError("The note is empty.")
    request = ResetRequest.objects.get(pk=request_id)
    return _record(request, RequestEvent.Kind.NOTE, actor=actor, message=text[:5000])


def request_record_view(*, request_id: int, actor: Actor) -> None:
    """Audit: a staff member opened the request's page."""
    RequestEvent.objects.create(
        request_id=request_id, kind=RequestEvent.Kind.VIEWED, actor=actor, created_at=timezone.now()
    )


# --- Outbox -----------------------------------------------------------------

# The emails a patient waits for (portal_reset/settings.py: CELERY_TASK_QUEUES).
PATIENT_EMAIL_QUEUE = "patient_email"
PATIENT_KINDS = emails.PATIENT_KINDS


def email_queue(*, request: ResetRequest | None, kind: str, to: str, actor: Actor = None) -> OutboundEmail:
    """Put one email in the outbox, in the caller's transaction, and hand its
    id to Celery once that transaction commits."""
    [outbound] = email_queue_many(messages=[(request, kind, to)], actor=actor)
    return outbound


def email_queue_many(
    *,
    messages: Sequence[tuple[ResetRequest | None, str, str]],
    actor: Actor = None,
    also_record: Sequence[RequestEvent] = (),
) -> list[OutboundEmail]:
    """Put several emails (``messages``: (request, kind, to) each) in the
    outbox with one insert for the rows and one for their timeline events
    (after the caller's own ``also_record`` events, in the same insert), in
    the caller's transaction. After commit their ids go to Celery: a
    patient's emails to the queue workers take from first, the others to the
    default queue, each in batches a worker sends over one SMTP connection."""
    now = timezone.now()
    rows = OutboundEmail.objects.bulk_create(
        OutboundEmail(request=request, kind=kind, to=to, created_at=now, next_attempt_at=now)
        for request, kind, to in messages
    )
    RequestEvent.objects.bulk_create(
        [
            *also_record,
            *(
                RequestEvent(
                    request=row.request,
                    kind=RequestEvent.Kind.EMAIL_QUEUED,
                    actor=actor,
                    message=row.get_kind_display(),
                    created_at=now,
                )
                for row in rows
                if row.request is not None
            ),
        ]
    )
    queued = [(row.pk, row.kind) for row in rows]
    transaction.on_commit(lambda: _publish_by_queue(queued))
    return rows


def _publish_by_queue(queued: Sequence[tuple[int, str]]) -> int:
    """Publish (id, kind) pairs, a patient's emails to the queue workers take
    from first; return how many were handed over."""
    patient = [email_id for email_id, kind in queued if kind in PATIENT_KINDS]
    others = [email_id for email_id, kind in queued if kind not in PATIENT_KINDS]
    handed = email_publish(email_ids=patient, queue=PATIENT_EMAIL_QUEUE) if patient else 0
    if handed < len(patient):
        return handed  # the broker is down: the rest would wait for it in vain
    return handed + (email_publish(email_ids=others) if others else 0)


def email_send_again(*, email_id: int, actor: Actor) -> OutboundEmail:
    """Queue a failed (or sent) email again as a new outbox row: history is
    never edited. Atomic. Refused while the original is still on its way, and
    for a request whose personal data was purged."""
    with transaction.atomic():
        original = OutboundEmail.objects.select_related("request").select_for_update().get(pk=email_id)
        if original.state in (OutboundEmail.State.PENDING, OutboundEmail.State.SENDING):
            raise WorkflowError(f"Email #{original.pk} is still being sent; wait for it to be sent or to fail.")
        if not original.to:
            raise WorkflowError(f"Email #{original.pk} has no address any more (personal data erased).")
        return email_queue(request=original.request, kind=original.kind, to=original.to, actor=actor)


def email_publish(*, email_ids: Sequence[int], countdown: float | None = None, queue: str | None = None) -> int:
    """Hand outbox ids to the broker (the default queue unless ``queue``),
    EMAIL_BATCH_SIZE to a message; return how many were handed over. A
    broker that is down is logged and otherwise ignored: those rows stay
    pending and the sweeper queues them again."""
    from .tasks import send_emails

    handed, size = 0, settings.EMAIL_BATCH_SIZE
    for start in range(0, len(email_ids), size):
        batch = list(email_ids[start : start + size])
        try:
            send_emails.apply_async(args=[batch], countdown=countdown, queue=queue)
        except Exception as exc:  # kombu raises many kinds when the broker is down
            logger.warning(
                "could not queue %s emails, the sweeper will: %s",
                len(email_ids) - handed,
                type(exc).__name__,
            )
            break  # the rest would wait for the same broker in vain
        handed += len(batch)
    return handed


def _backoff_seconds(attempts: int) -> float:
    """Exponential with jitter: ~EMAIL_RETRY_BASE_SECONDS (30 s), then twice
    as long each time, capped at 30 minutes."""
    base = settings.EMAIL_RETRY_BASE_SECONDS
    return random.uniform(0.5, 1.0) * min(base * 2 ** max(attempts - 1, 0), 1800)


@dataclass(frozen=True)
class SendResult:
    state: str
    retry_in: float | None = None


def email_send(*, email_id: int) -> SendResult:
    """Send one outbox email; see email_send_many."""
    return email_send_many(email_ids=[email_id])[email_id]


def email_send_many(*, email_ids: Sequence[int]) -> dict[int, SendResult]:
    """Send outbox emails one after another over one SMTP connection, each at
    most once per claim.

    Idempotent and safe to call twice or from two workers at once: the rows
    are claimed first (_email_claim) and only the worker that claimed a row
    sends it. SMTP happens outside any transaction; a row is marked sent
    right after the server accepted its message, before the next message and
    before QUIT. An email that failed for a while comes back pending with its
    own ``retry_in``. A claim older than EMAIL_CLAIM_TIMEOUT_SECONDS belongs
    to a dead worker and may be taken again — so a worker killed after the
    server accepted a message but before marking it sent causes one
    duplicate (at-least-once).
    """
    email_ids = list(dict.fromkeys(email_ids))  # an id named twice is sent once
    # Built before anything is claimed: a backend that cannot be built
    # leaves every row as it was.
    connection = get_connection(fail_silently=False)
    claimed = _email_claim(email_ids)
    unsent = [email_id for email_id in email_ids if email_id in claimed]
    results: dict[int, SendResult] = {}
    deadline = timezone.now() + timedelta(seconds=settings.EMAIL_BATCH_SECONDS)
    try:
        while unsent and timezone.now() < deadline:
            results[unsent[0]] = _email_send_claimed(claimed[unsent[0]], connection)
            unsent.pop(0)
    finally:
        # Every row sent on this connection says so by now: only now QUIT. A
        # worker that dies during QUIT leaves sent rows, not stale claims
        # that the sweeper would send a second time.
        _close_quietly(connection)
        if unsent:
            # Out of time (a slow server) or an error (the database): what
            # was claimed but not tried goes back now, not after the claim
            # timeout.
            _email_release(unsent)
    results.update({email_id: SendResult(state=OutboundEmail.State.PENDING) for email_id in unsent})
    others = [email_id for email_id in email_ids if email_id not in claimed]
    if others:
        states = dict(OutboundEmail.objects.filter(pk__in=others).values_list("pk", "state"))
        results.update({email_id: SendResult(state=states.get(email_id, "missing")) for email_id in others})
    return {email_id: results[email_id] for email_id in email_ids}


def _email_claim(email_ids: Sequence[int]) -> dict[int, OutboundEmail]:
    """Claim for this worker the rows among ``email_ids`` that may be sent:
    pending and due (a retry waits out its backoff even if its task comes
    early), or claimed so long ago that their worker died. Each row is
    claimed by one worker only: on PostgreSQL a row another worker is
    claiming is skipped (SKIP LOCKED), on SQLite the IMMEDIATE transaction
    lets one writer in at a time."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT_SECONDS)
    claimable = Q(state=OutboundEmail.State.PENDING) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    ) | Q(state=OutboundEmail.State.SENDING, claimed_at__lt=stale)
    with transaction.atomic():
        rows = list(
            OutboundEmail.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("request")
            .filter(claimable, pk__in=email_ids)
        )
        if rows:
            OutboundEmail.objects.filter(claimable, pk__in=[row.pk for row in rows]).update(
                state=OutboundEmail.State.SENDING, claimed_at=now, attempts=F("attempts") + 1
            )
    for row in rows:
        row.state, row.claimed_at, row.attempts = OutboundEmail.State.SENDING, now, row.attempts + 1
    return {row.pk: row for row in rows}


def _email_release(email_ids: Sequence[int]) -> None:
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


def _email_send_claimed(outbound: OutboundEmail, connection: Any) -> SendResult:
    try:
        message = emails.build_message(outbound)
        message.connection = connection
        # Opened here (unless already open), the backend keeps the
        # connection open after sending.
        connection.open()
        message.send(fail_silently=False)
    except Exception as exc:
        # What the server made of the conversation is unknown: the next
        # message starts on a new connection.
        _close_quietly(connection)
        return _email_failed(outbound, exc)

    sent_at = timezone.now()
    with transaction.atomic():
        OutboundEmail.objects.filter(pk=outbound.pk, state=OutboundEmail.State.SENDING).update(
            state=OutboundEmail.State.SENT, sent_at=sent_at, last_error=""
        )
        if outbound.request is not None:
            _record(
                outbound.request,
                RequestEvent.Kind.EMAIL_SENT,
                message=outbound.get_kind_display(),
                at=sent_at,
            )
    logger.info(
        "email sent id=%s kind=%s attempts=%s",
        outbound.pk,
        outbound.kind,
        outbound.attempts,
    )
    return SendResult(state=OutboundEmail.State.SENT)


def _close_quietly(connection: Any) -> None:
    """Close an SMTP connection; a failure to say QUIT changes nothing."""
    try:
        connection.close()
    except Exception as exc:
        logger.warning("closing the SMTP connection failed: %s", type(exc).__name__)


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, SoftTimeLimitExceeded):
        # The task ran out of time mid-send: whether the server took the
        # message is unknown, so it is tried again (at least once).
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
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


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"[:500]
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
        return f"{code} {_text(reply)}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _email_failed(outbound: OutboundEmail, exc: Exception) -> SendResult:
    """Release the claim: back to pending with a backoff when the failure is
    temporary and attempts remain, otherwise failed for staff to see."""
    error = _describe_error(exc)
    transient = _is_transient(exc)
    now = timezone.now()
    if transient and outbound.attempts < settings.EMAIL_MAX_ATTEMPTS:
        delay = _backoff_seconds(outbound.attempts)
        OutboundEmail.objects.filter(pk=outbound.pk, state=OutboundEmail.State.SENDING).update(
            state=OutboundEmail.State.PENDING,
            last_error=error,
            next_attempt_at=now + timedelta(seconds=delay),
        )
        logger.warning(
            "email id=%s attempt %s failed, retrying in %.0fs",
            outbound.pk,
            outbound.attempts,
            delay,
        )
        return SendResult(state=OutboundEmail.State.PENDING, retry_in=delay)

    with transaction.atomic():
        OutboundEmail.objects.filter(pk=outbound.pk, state=OutboundEmail.State.SENDING).update(
            state=OutboundEmail.State.FAILED, last_error=error
        )
        if outbound.request is not None:
            _record(
                outbound.request,
                RequestEvent.Kind.EMAIL_FAILED,
                message=f"{outbound.get_kind_display()}: {error} (after {outbound.attempts} attempts)",
                at=now,
            )
    logger.error("email id=%s failed for good after %s attempts", outbound.pk, outbound.attempts)
    return SendResult(state=OutboundEmail.State.FAILED)


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
        .values_list("pk", "kind")[:500]
    )  # oldest first
    count = _publish_by_queue(list(due))
    if count:
        logger.info("outbox sweep queued %s emails", count)
    return count


# --- Scheduled work ---------------------------------------------------------


def requests_close_stale_waiting() -> int:
    """Close every request that has waited on the patient for
    WAITING_AUTO_CLOSE_DAYS, with the closure email. Safe to run twice or
    beside staff: each close is conditional on the request still waiting."""
    cutoff = timezone.now() - timedelta(days=settings.WAITING_AUTO_CLOSE_DAYS)
    stale = ResetRequest.objects.filter(status=Status.WAITING, waiting_since__lte=cutoff).values_list("pk", flat=True)
    closed = 0
    for request_id in list(stale):
        try:
            request_close(
                request_id=request_id,
                actor=None,
                reason=ResetRequest.CloseReason.UNVERIFIED,
                note=f"Closed automatically: no answer from the patient in {settings.WAITING_AUTO_CLOSE_DAYS} days.",
                expected_status=Status.WAITING,
            )
            closed += 1
        except WorkflowError:
            continue  # a staff member moved it meanwhile
    if closed:
        logger.info("closed %s requests left waiting", closed)
    return closed


def digest_queue_overdue() -> OutboundEmail | None:
    """Queue the daily overdue digest to STAFF_NOTIFY_EMAIL, at most once a
    day (in the practice's time zone) and only when something is overdue."""
    day_start = practice_day_start(practice_today())
    with transaction.atomic():
        if not requests_overdue().exists():
            return None
        already = OutboundEmail.objects.filter(
            kind=OutboundEmail.Kind.STAFF_OVERDUE_DIGEST, created_at__gte=day_start
        ).exists()
        if already:
            return None
        return email_queue(request=None, kind=OutboundEmail.Kind.STAFF_OVERDUE_DIGEST, to=settings.STAFF_NOTIFY_EMAIL)


def requests_purge_expired(*, batch_size: int = 500) -> int:
    """Erase the personal data of requests that ended more than
    RETENTION_DAYS ago: names, date of birth, contact details, free text,
    family members, timeline texts, email addresses and the status link.
    The rows and their timeline skeleton stay, for counts and audit.
    Idempotent; each batch is one transaction."""
    cutoff = timezone.now() - timedelta(days=settings.RETENTION_DAYS)
    purged = 0
    while True:
        with transaction.atomic():
            ids = list(
                ResetRequest.objects.select_for_update(skip_locked=True)
                .filter(ended_at__lt=cutoff, personal_data_purged_at__isnull=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return purged
            now = timezone.now()
            ResetRequest.objects.filter(pk__in=ids).update(
                first_name="",
                last_name="",
                date_of_birth=None,
                email="",
                phone="",
                details="",
                status_secret="",
                personal_data_purged_at=now,
            )
            FamilyMember.objects.filter(request_id__in=ids).delete()
            RequestEvent.objects.filter(request_id__in=ids).erase_messages()
            OutboundEmail.objects.filter(request_id__in=ids).update(to="", last_error="")
            RequestEvent.objects.bulk_create(
                RequestEvent(request_id=pk, kind=RequestEvent.Kind.PURGED, created_at=now) for pk in ids
            )
            purged += len(ids)
        logger.info("purged personal data of %s requests", len(ids))
