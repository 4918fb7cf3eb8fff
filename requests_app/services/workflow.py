"""The staff workflow: every status move, assignment, identity check, note
and view of a reset request.

``check_move`` is the one place that says whether a move may happen and, if
not, why, in the words staff see; every move here calls it, and the admin
calls it to decide what to offer. Each function is atomic, records its
timeline event with the acting user in the same transaction, and queues its
emails to be published after commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..exceptions import ConcurrentChange, IdentityNotVerified, TransitionNotAllowed, WorkflowError
from ..formatting import person_name, status_label
from ..models import MOVES, Action, CloseReason, OutboundEmail, RequestEvent, ResetRequest, Status
from ..outbox.queue import email_queue
from ..working_hours import add_working_hours, working_time_between

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# The longest internal note kept; admin/forms.py offers no more.
NOTE_MAX_LENGTH = 5000


def check_move(reset: ResetRequest, *, action: str, expected_status: str | None = None) -> None:
    """Raise the domain error that forbids ``action`` on ``reset`` now, or
    return if it may go ahead: the status the staff member saw has not
    changed since (``expected_status``), the table of moves allows the
    action from the current status, and resolving has its identity check."""
    if expected_status is not None and reset.status != expected_status:
        raise ConcurrentChange(
            f"{reset.reference} was changed by someone else; it is now {reset.get_status_display().lower()}."
        )
    if not reset.allows(action):
        raise TransitionNotAllowed(
            f"{reset.reference} cannot go from {reset.get_status_display().lower()} "
            f"to {status_label(MOVES[action].to_status).lower()}."
        )
    if action == Action.RESOLVE and reset.identity_verified_at is None:
        raise IdentityNotVerified(f"Record the identity check of {reset.reference} before resolving it.")


def _move(
    *,
    reset_id: int,
    action: str,
    actor: User | None,
    fields: dict[str, Any] | None = None,
    message: str = "",
    expected_status: str | None = None,
    claim: Q | None = None,
) -> ResetRequest:
    """Make the move of ``action`` on one request if check_move allows it.

    The write is a conditional UPDATE on the status read just before, so of
    two staff acting at once exactly one wins; the other gets
    ConcurrentChange and nothing is written for them. ``claim`` adds to the
    UPDATE's condition what else must not have changed since that read.
    """
    now = timezone.now()
    reset = ResetRequest.objects.get(pk=reset_id)
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
    """new → in progress, or waiting → in progress (the patient answered).
    Starting an unassigned request assigns it to the one who starts it,
    in the same transaction as the move and its events."""
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
    *, reset_id: int, actor: User | None, dob: bool, phone: bool, email: bool
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
        reset = ResetRequest.objects.select_for_update().get(pk=reset_id)
        if not reset.is_open:
            raise TransitionNotAllowed(f"{reset.reference} has ended.")
        reset.identity_dob_matched = dob
        reset.identity_phone_matched = phone
        reset.identity_email_matched = email
        reset.identity_verified_by = actor
        reset.identity_verified_at = now
        reset.save()
        matched = ", ".join(name for name, ok in (("date of birth", dob), ("phone", phone), ("email", email)) if ok)
        RequestEvent.objects.record(
            reset, RequestEvent.Kind.IDENTITY, actor=actor, message=f"Matched the chart: {matched}", at=now
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
