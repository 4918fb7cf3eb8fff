"""The staff workflow: every status move, assignment, identity check, note
and view of a reset request.

``check_move`` is the one place that says whether a move may happen and, if
not, why, in the words staff see; every move here calls it, and the admin
calls it to decide what to offer (``check_verify_and_resolve`` likewise for
the front desk's one form). Each function is atomic, records its
timeline event with the acting user in the same transaction, and queues its
emails to be published after commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ..exceptions import ConcurrentChange, IdentityNotVerified, TransitionNotAllowed, WorkflowError
from ..formatting import person_name, status_label
from ..models import (
    MOVES,
    Action,
    CloseReason,
    OutboundEmail,
    Outcome,
    ReopenReason,
    RequestEvent,
    ResetRequest,
    Status,
)
from ..outbox.queue import email_queue
from ..practice_time import practice_zone
from ..working_hours import add_working_hours, due_after, working_time_between

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# The longest internal note kept; admin/forms.py offers no more.
NOTE_MAX_LENGTH = 5000


def check_move(reset: ResetRequest, *, action: str, expected_status: str | None = None) -> None:
    """Raise the domain error that forbids ``action`` on ``reset`` now, or
    return if it may go ahead: the status the staff member saw has not
    changed since (``expected_status``), the table of moves allows the
    action from the current status, resolving has its identity check, and
    reopening is within REOPEN_DAYS of the end, for a request whose personal
    data is still there and whose patient has no other open request."""
    _check_unchanged(reset, expected_status)
    if action == Action.REOPEN and reset.is_open:
        raise TransitionNotAllowed(
            f"{reset.reference} is still open ({reset.get_status_display().lower()}); "
            "only a resolved or closed request can be reopened."
        )
    if not reset.allows(action):
        raise TransitionNotAllowed(
            f"{reset.reference} cannot go from {reset.get_status_display().lower()} "
            f"to {status_label(MOVES[action].to_status).lower()}."
        )
    if action == Action.RESOLVE and reset.identity_verified_at is None:
        raise IdentityNotVerified(f"Record the identity check of {reset.reference} before resolving it.")
    if action == Action.REOPEN:
        _check_reopen(reset)


def _check_unchanged(reset: ResetRequest, expected_status: str | None) -> None:
    if expected_status is not None and reset.status != expected_status:
        raise ConcurrentChange(
            f"{reset.reference} was changed by someone else; it is now {reset.get_status_display().lower()}."
        )


def _check_reopen(reset: ResetRequest) -> None:
    """What the table cannot say about reopening an ended request."""
    if reset.personal_data_purged_at is not None:
        raise TransitionNotAllowed(
            f"{reset.reference} cannot be reopened: its personal data was erased. "
            "Ask the patient to file a new request."
        )
    # A request ended before ended_at was kept counts from its last change.
    ended_at = reset.ended_at or reset.updated_at
    if timezone.now() - ended_at > timedelta(days=settings.REOPEN_DAYS):
        raise TransitionNotAllowed(
            f"{reset.reference} ended more than {settings.REOPEN_DAYS} days ago; ask the patient to file a new request."
        )
    # A patient has one open request at a time (the database's unique index
    # says so too, but without saying which one).
    other = (
        ResetRequest.objects.filter(email=reset.email, date_of_birth=reset.date_of_birth, is_open=True)
        .exclude(pk=reset.pk)
        .values_list("reference", flat=True)
        .first()
    )
    if other is not None:
        raise TransitionNotAllowed(
            f"{reset.reference} cannot be reopened: the same patient has an open request, {other}. "
            "Work that one instead."
        )


def check_verify_and_resolve(reset: ResetRequest, *, expected_status: str | None = None) -> None:
    """Raise the domain error that forbids verifying and resolving ``reset``
    in one step (reset_verify_and_resolve) now, or return if it may go
    ahead: it is new or in progress and still shows the status the staff
    member saw. The identity check's own rule is checked with the answers."""
    _check_unchanged(reset, expected_status)
    if reset.status not in (Status.NEW, Status.IN_PROGRESS):
        raise TransitionNotAllowed(
            f"{reset.reference} is {reset.get_status_display().lower()}; only a new or in-progress "
            "request can be verified and resolved in one step."
        )


def _move(
    *,
    reset_id: int,
    action: str,
    actor: User | None,
    fields: dict[str, Any] | None = None,
    message: str = "",
    expected_status: str | None = None,
    claim: Q | None = None,
    read: ResetRequest | None = None,
) -> ResetRequest:
    """Make the move of ``action`` on one request if check_move allows it.

    The write is a conditional UPDATE on the status read just before, so of
    two staff acting at once exactly one wins; the other gets
    ConcurrentChange and nothing is written for them. ``claim`` adds to the
    UPDATE's condition what else must not have changed since that read;
    ``read``: the caller's own read of the request, when it wrote its
    ``fields`` or ``message`` from it.
    """
    now = timezone.now()
    reset = read if read is not None else ResetRequest.objects.get(pk=reset_id)
    check_move(reset, action=action, expected_status=expected_status)
    current, to_status = reset.status, MOVES[action].to_status
    changes: dict[str, Any] = dict(fields or {})
    changes["status"] = to_status
    changes["is_open"] = to_status in ResetRequest.OPEN_STATUSES
    changes["updated_at"] = now
    if current == Status.WAITING and reset.waiting_since is not None:
        # The due clock does not run while the request waits on the patient:
        # it resumes with the working time owed when the wait began (worked
        # out from the due time for a request set waiting before that was kept).
        owed = reset.due_owed
        if owed is None:
            owed = working_time_between(reset.waiting_since, reset.due_at)
        changes["due_at"] = add_working_hours(now, owed)
        changes["waiting_since"] = None
        changes["due_owed"] = None
    if to_status == Status.WAITING:
        changes["waiting_since"] = now
        changes["due_owed"] = working_time_between(now, reset.due_at)
    if not changes["is_open"]:
        changes["ended_at"] = now
    with transaction.atomic():
        claimed = ResetRequest.objects.filter(Q(pk=reset_id, status=current), claim or Q()).update(**changes)
        if claimed != 1:
            raise ConcurrentChange(
                f"{reset.reference} was changed by someone else at the same time; nothing was saved."
            )
        reset.refresh_from_db()
        RequestEvent.objects.record(
            reset,
            RequestEvent.Kind.STATUS,
            actor=actor,
            from_status=current,
            to_status=to_status,
            message=message,
            at=now,
        )
        if to_status == Status.RESOLVED:
            email_queue(reset=reset, kind=OutboundEmail.Kind.RESOLVED, to=reset.email)
        elif to_status == Status.CLOSED and reset.close_reason != CloseReason.SPAM:
            email_queue(reset=reset, kind=OutboundEmail.Kind.CLOSED, to=reset.email)
    logger.info("reset request %s moved %s -> %s", reset.reference, current, to_status)
    return reset


def reset_start(*, reset_id: int, actor: User | None, expected_status: str | None = None) -> ResetRequest:
    """new → in progress, and nothing else (a waiting request resumes, an
    ended one is reopened). Starting an unassigned request assigns it to the
    one who starts it, in the same transaction as the move and its events."""
    with transaction.atomic():
        reset = ResetRequest.objects.only("assignee_id").get(pk=reset_id)
        fields: dict[str, Any] = {}
        claim = None
        if reset.assignee_id is None and actor is not None:
            fields["assignee"] = actor
            # Only if nobody took it since the read above: someone's "assign
            # to me" in between must not be overwritten behind their back.
            claim = Q(assignee__isnull=True)
        moved = _move(
            reset_id=reset_id,
            action=Action.START,
            actor=actor,
            fields=fields,
            expected_status=expected_status,
            claim=claim,
        )
        if "assignee" in fields:
            RequestEvent.objects.record(
                moved, RequestEvent.Kind.ASSIGNED, actor=actor, message=f"Assigned to {person_name(actor)}"
            )
    return moved


def reset_wait(
    *, reset_id: int, actor: User | None, note: str = "", expected_status: str | None = None
) -> ResetRequest:
    """in progress → waiting on the patient; the due clock pauses."""
    return _move(reset_id=reset_id, action=Action.WAIT, actor=actor, message=note, expected_status=expected_status)


def reset_resume(
    *, reset_id: int, actor: User | None, note: str = "", expected_status: str | None = None
) -> ResetRequest:
    """waiting → in progress: the patient answered. The due clock runs again
    with the working time that was still owed when the wait began."""
    return _move(reset_id=reset_id, action=Action.RESUME, actor=actor, message=note, expected_status=expected_status)


def reset_resolve(
    *,
    reset_id: int,
    actor: User | None,
    outcome: str,
    note: str = "",
    expected_status: str | None = None,
) -> ResetRequest:
    """in progress → resolved. Needs an outcome and a recorded identity
    check; queues the resolution email to the patient."""
    if outcome not in ResetRequest.Outcome.values:
        raise WorkflowError("Choose the outcome of the reset.")
    return _move(
        reset_id=reset_id,
        action=Action.RESOLVE,
        actor=actor,
        fields={"outcome": outcome},
        message=note,
        expected_status=expected_status,
    )


def reset_close(
    *,
    reset_id: int,
    actor: User | None,
    reason: str,
    note: str = "",
    expected_status: str | None = None,
) -> ResetRequest:
    """Any open status → closed, with a reason. Queues the closure email,
    except for spam."""
    if reason not in CloseReason.values:
        raise WorkflowError("Choose why the request is closed.")
    return _move(
        reset_id=reset_id,
        action=Action.CLOSE,
        actor=actor,
        fields={"close_reason": reason},
        message=note,
        expected_status=expected_status,
    )


def reset_reopen(
    *,
    reset_id: int,
    actor: User | None,
    reason: str,
    note: str = "",
    notify_patient: bool = True,
    expected_status: str | None = None,
) -> ResetRequest:
    """resolved or closed → in progress, within REOPEN_DAYS of the end, with
    a reason (ReopenReason). Atomic. The request starts over: outcome, close
    reason and identity check are cleared (the timeline keeps what they
    were), the due clock starts again from now, and the request is the
    actor's. Queues the reopened email to the patient unless
    ``notify_patient`` is off. Refused, naming it, while the same patient
    has another open request; of two staff reopening at once one wins, the
    other gets ConcurrentChange."""
    if reason not in ReopenReason.values:
        raise WorkflowError("Choose why the request is reopened.")
    now = timezone.now()
    # The fields and the message are written from this read; _move checks
    # the move on it and writes only if the row is still as read.
    reset = ResetRequest.objects.get(pk=reset_id)
    fields: dict[str, Any] = {
        "outcome": "",
        "close_reason": "",
        "identity_dob_matched": False,
        "identity_phone_matched": False,
        "identity_email_matched": False,
        "identity_verified_by": None,
        "identity_verified_at": None,
        "ended_at": None,
        "due_at": due_after(now),
        "waiting_since": None,
        "due_owed": None,
    }
    reassigned = actor is not None and reset.assignee_id != actor.pk
    if reassigned:
        fields["assignee"] = actor
    try:
        with transaction.atomic():
            reopened = _move(
                reset_id=reset_id,
                action=Action.REOPEN,
                actor=actor,
                fields=fields,
                message=_reopen_message(reset, reason=reason, note=note),
                expected_status=expected_status,
                # What the message says was cleared is what is cleared: the
                # request ended no other time and was not purged since.
                claim=Q(ended_at=reset.ended_at, personal_data_purged_at__isnull=True),
                read=reset,
            )
            if reassigned:
                RequestEvent.objects.record(
                    reopened, RequestEvent.Kind.ASSIGNED, actor=actor, message=f"Assigned to {person_name(actor)}"
                )
            if notify_patient:
                email_queue(reset=reopened, kind=OutboundEmail.Kind.REOPENED, to=reopened.email, actor=actor)
    except IntegrityError:
        # The patient filed a new request after check_move looked: the
        # one-open-request index refused the reopen. Say which request.
        check_move(ResetRequest.objects.get(pk=reset_id), action=Action.REOPEN)
        raise
    return reopened


def _reopen_message(reset: ResetRequest, *, reason: str, note: str) -> str:
    """The reopen's timeline line: why, the note, and what it cleared."""
    why = "Other reason" if reason == ReopenReason.OTHER else ReopenReason(reason).label
    parts = [f"Reopened: {why}."]
    note = note.strip()
    if note:
        parts.append(f"Note: {note}" if note[-1] in ".!?" else f"Note: {note}.")
    was = status_label(reset.status).lower()
    if reset.outcome:
        was += f" ({Outcome(reset.outcome).label})"
    elif reset.close_reason:
        was += f" ({CloseReason(reset.close_reason).label})"
    if reset.identity_verified_at is not None:
        checked = reset.identity_verified_at.astimezone(practice_zone())
        by = f" by {person_name(reset.identity_verified_by)}" if reset.identity_verified_by_id else ""
        was += f"; identity check{by} on {checked:%b} {checked.day} cleared"
    parts.append(f"Was: {was}.")
    return " ".join(parts)


# The timeline's words for a patient's own "I can get in now" (staff read them).
WITHDRAWN_BY_PATIENT = "Closed by the patient from the status page: they can get in now"


def reset_withdraw(*, reset_id: int) -> ResetRequest:
    """The patient's "I can get in now" on their status page: any open
    status → closed as withdrawn, by nobody on the staff, with the closure
    email. An ended request raises TransitionNotAllowed and is left as it
    is (a second click, a stale page); a move made at the same moment
    raises ConcurrentChange, nothing written."""
    return _move(
        reset_id=reset_id,
        action=Action.CLOSE,
        actor=None,
        fields={"close_reason": CloseReason.WITHDRAWN},
        message=WITHDRAWN_BY_PATIENT,
    )


def resets_close_stale_waiting() -> int:
    """Close every request that has waited on the patient for
    WAITING_AUTO_CLOSE_DAYS, with the closure email. Safe to run twice or
    beside staff: each close is conditional on the request still waiting."""
    cutoff = timezone.now() - timedelta(days=settings.WAITING_AUTO_CLOSE_DAYS)
    stale = ResetRequest.objects.filter(status=Status.WAITING, waiting_since__lte=cutoff).values_list("pk", flat=True)
    closed = 0
    for reset_id in list(stale):
        try:
            reset_close(
                reset_id=reset_id,
                actor=None,
                reason=CloseReason.UNVERIFIED,
                note=f"Closed automatically: no answer from the patient in {settings.WAITING_AUTO_CLOSE_DAYS} days.",
                expected_status=Status.WAITING,
            )
            closed += 1
        except WorkflowError:
            continue  # a staff member moved it meanwhile
    if closed:
        logger.info("closed %s requests left waiting", closed)
    return closed


# --- Assignment, identity check, notes, views -------------------------------

_ANY: Any = object()


def reset_assign(
    *,
    reset_id: int,
    assignee: User | None,
    actor: User | None,
    expected_status: str | None = None,
    expected_assignee_id: Any = _ANY,
) -> ResetRequest:
    """Give an open request to ``assignee`` (None: unassign). Atomic; with
    ``expected_status`` / ``expected_assignee_id`` (what the staff member's
    page showed) it raises ConcurrentChange if someone got there first."""
    with transaction.atomic():
        # The row lock makes the check and the write one step.
        reset = ResetRequest.objects.select_for_update().get(pk=reset_id)
        if (expected_status is not None and reset.status != expected_status) or (
            expected_assignee_id is not _ANY and reset.assignee_id != expected_assignee_id
        ):
            raise ConcurrentChange(f"{reset.reference} was changed by someone else; nothing was saved.")
        if not reset.is_open:
            raise TransitionNotAllowed(f"{reset.reference} has ended; it cannot be reassigned.")
        new_id = assignee.pk if assignee is not None else None
        if reset.assignee_id == new_id:
            return reset
        reset.assignee = assignee
        reset.save(update_fields=["assignee", "updated_at"])
        RequestEvent.objects.record(
            reset, RequestEvent.Kind.ASSIGNED, actor=actor, message=f"Assigned to {person_name(assignee) or 'nobody'}"
        )
    return reset


def reset_resend_acknowledgment(*, reset_id: int, actor: User | None) -> OutboundEmail:
    """Queue the acknowledgment again for an open request (the patient lost
    it): a new outbox row, never an edit of the old one. Atomic."""
    with transaction.atomic():
        reset = ResetRequest.objects.select_for_update().get(pk=reset_id)
        if not reset.is_open:
            raise TransitionNotAllowed(f"{reset.reference} has ended; no acknowledgment is sent.")
        return email_queue(reset=reset, kind=OutboundEmail.Kind.ACKNOWLEDGMENT, to=reset.email, actor=actor)


def reset_record_identity_check(
    *,
    reset_id: int,
    actor: User | None,
    dob: bool,
    phone: bool,
    email: bool,
    expected_status: str | None = None,
) -> ResetRequest:
    """Record which identifiers matched the chart, who checked and when, on
    an open request. The date of birth and one more identifier must match.
    Atomic; ConcurrentChange if the status moved since it was read (or
    since the staff member's page showed ``expected_status``)."""
    _require_identity_match(dob=dob, phone=phone, email=email)
    now = timezone.now()
    with transaction.atomic():
        reset = ResetRequest.objects.get(pk=reset_id)
        _check_unchanged(reset, expected_status)
        if not reset.is_open:
            raise TransitionNotAllowed(f"{reset.reference} has ended.")
        claimed = ResetRequest.objects.filter(pk=reset_id, status=reset.status).update(
            identity_dob_matched=dob,
            identity_phone_matched=phone,
            identity_email_matched=email,
            identity_verified_by=actor,
            identity_verified_at=now,
            updated_at=now,
        )
        if claimed != 1:
            raise ConcurrentChange(
                f"{reset.reference} was changed by someone else at the same time; nothing was saved."
            )
        reset.refresh_from_db()
        matched = ", ".join(name for name, ok in (("date of birth", dob), ("phone", phone), ("email", email)) if ok)
        RequestEvent.objects.record(
            reset, RequestEvent.Kind.IDENTITY, actor=actor, message=f"Matched the chart: {matched}", at=now
        )
    return reset


def _require_identity_match(*, dob: bool, phone: bool, email: bool) -> None:
    if not (dob and (phone or email)):
        raise IdentityNotVerified(
            "Identity is verified when the date of birth and at least one more identifier "
            "(phone or email) match the chart."
        )


def reset_verify_and_resolve(
    *,
    reset_id: int,
    actor: User | None,
    dob: bool,
    phone: bool,
    email: bool,
    outcome: str,
    note: str = "",
    expected_status: str | None = None,
) -> ResetRequest:
    """The front desk's one form for a straightforward request, from new or
    in progress: started (if new, which assigns it if nobody holds it), the
    identity check recorded and resolved with ``outcome``, in ONE
    transaction, each step its own timeline event with the actor; the
    resolution email is queued. All or nothing: a check that does not meet
    the rule (IdentityNotVerified), an unknown outcome, or a move someone
    made meanwhile (ConcurrentChange) writes nothing at all."""
    if outcome not in Outcome.values:
        raise WorkflowError("Choose the outcome of the reset.")
    _require_identity_match(dob=dob, phone=phone, email=email)
    reset = ResetRequest.objects.get(pk=reset_id)
    check_verify_and_resolve(reset, expected_status=expected_status)
    with transaction.atomic():
        # Each step expects the status the one before left: a move made by
        # someone else in between raises ConcurrentChange and the whole
        # transaction, earlier steps included, is rolled back.
        if reset.status == Status.NEW:
            reset_start(reset_id=reset_id, actor=actor, expected_status=Status.NEW)
        reset_record_identity_check(
            reset_id=reset_id, actor=actor, dob=dob, phone=phone, email=email, expected_status=Status.IN_PROGRESS
        )
        return reset_resolve(
            reset_id=reset_id, actor=actor, outcome=outcome, note=note, expected_status=Status.IN_PROGRESS
        )


def reset_change_language(*, reset_id: int, actor: User | None, language: str) -> ResetRequest:
    """Write the patient's emails and status page in ``language`` (one of
    settings.LANGUAGES) from now on, with a timeline event. Open or ended
    requests alike, not one whose personal data was erased. The same
    language again changes nothing and records nothing. Atomic."""
    names = dict(settings.LANGUAGES)
    if language not in names:
        raise WorkflowError(f"Choose one of the languages: {', '.join(names.values())}.")
    with transaction.atomic():
        reset = ResetRequest.objects.get(pk=reset_id)
        if reset.personal_data_purged_at is not None:
            raise WorkflowError(f"{reset.reference}'s personal data was erased; its language is not changed.")
        if reset.language == language:
            return reset
        before = reset.language
        # Only if nobody changed it (or purged the request) since the read.
        claimed = ResetRequest.objects.filter(
            pk=reset_id, language=before, personal_data_purged_at__isnull=True
        ).update(language=language, updated_at=timezone.now())
        if claimed != 1:
            raise ConcurrentChange(f"{reset.reference} was changed by someone else; nothing was saved.")
        reset.refresh_from_db()
        RequestEvent.objects.record(
            reset,
            RequestEvent.Kind.LANGUAGE,
            actor=actor,
            message=f"Language changed from {names.get(before, before)} to {names[language]}",
        )
    return reset


def reset_add_note(*, reset_id: int, actor: User | None, text: str) -> RequestEvent:
    """An internal note on the timeline; patients never see notes."""
    text = text.strip()
    if not text:
        raise WorkflowError("The note is empty.")
    reset = ResetRequest.objects.get(pk=reset_id)
    return RequestEvent.objects.record(reset, RequestEvent.Kind.NOTE, actor=actor, message=text[:NOTE_MAX_LENGTH])


def reset_record_view(*, reset_id: int, actor: User | None) -> None:
    """Audit: a staff member opened the request's page."""
    RequestEvent.objects.create(
        reset_id=reset_id, kind=RequestEvent.Kind.VIEWED, actor=actor, created_at=timezone.now()
    )
