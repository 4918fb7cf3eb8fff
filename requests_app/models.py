"""Reset requests, their timeline and their outbox.

The model knows which status moves there are (``MOVES``, keyed by the staff
action that makes each); ``services.workflow`` is the only code that makes
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .references import new_status_secret

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class Status(models.TextChoices):
    NEW = "new", "New"
    IN_PROGRESS = "in_progress", "In progress"
    WAITING = "waiting", "Waiting on patient"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


class Reason(models.TextChoices):
    # Patients pick one on the form, in their language; staff read it in English.
    LINK_EXPIRED = "link_expired", _("The invitation link expired")
    NEVER_RECEIVED = "never_received", _("I never received the invitation email")
    SECURITY_CODE = (
        "security_code",
        _("The security code does not arrive or does not work"),
    )
    SHARED_ACCOUNT = "shared_account", _("Family members share one email address")
    OTHER = "other", _("Something else")


class Outcome(models.TextChoices):
    REINVITED = "reinvited", "Re-invited to the portal"
    EMAIL_CORRECTED = "email_corrected", "Email address corrected and re-invited"
    SELF_SERVICE = "self_service", "Patient got in on their own"
    OTHER = "other", "Other"


class CloseReason(models.TextChoices):
    DUPLICATE = "duplicate", "Duplicate"
    UNVERIFIED = "unverified", "Identity could not be verified"
    SPAM = "spam", "Spam"
    WITHDRAWN = "withdrawn", "Withdrawn by the patient"
    OTHER = "other", "Other"


class Action(models.TextChoices):
    """What staff do to a request; each action makes exactly one kind of move."""

    START = "start", "Start"
    WAIT = "wait", "Mark waiting on patient"
    RESOLVE = "resolve", "Resolve"
    CLOSE = "close", "Close"


OPEN_STATUSES = frozenset({Status.NEW, Status.IN_PROGRESS, Status.WAITING})


@dataclass(frozen=True)
class Move:
    """From which statuses an action may be taken, and where it leads."""

    from_statuses: frozenset[str]
    to_status: str


# The only status moves there are, keyed by the action that makes each, so
# that no action can make another's move. services.workflow.check_move
# enforces it for every caller; the admin offers what it allows.
MOVES: dict[str, Move] = {
    # new → in progress, or waiting → in progress (the patient answered).
    Action.START: Move(frozenset({Status.NEW, Status.WAITING}), Status.IN_PROGRESS),
    Action.WAIT: Move(frozenset({Status.IN_PROGRESS}), Status.WAITING),
    Action.RESOLVE: Move(frozenset({Status.IN_PROGRESS}), Status.RESOLVED),
    Action.CLOSE: Move(OPEN_STATUSES, Status.CLOSED),
}


class ResetRequest(models.Model):
    Status = Status
    Reason = Reason
    Outcome = Outcome
    CloseReason = CloseReason

    OPEN_STATUSES = OPEN_STATUSES

    reference = models.CharField(max_length=9, unique=True, editable=False)
    # The status link is /status/<reference without dash><status_secret>/:
    # the request is found by its reference, then the secret compared in
    # constant time. Cleared when personal data is purged.
    status_secret = models.CharField(max_length=64, default=new_status_secret, editable=False)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    # Mirrors "status is new, in progress or waiting" (a constraint keeps it
    # true) so the staff list can order and filter open requests by index.
    is_open = models.BooleanField(default=True, editable=False)
    reason = models.CharField(max_length=20, choices=Reason.choices)

    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField(null=True)
    email = models.EmailField(max_length=254)
    phone = models.CharField(max_length=32)
    appointment_date = models.DateField()
    details = models.TextField(max_length=1000, blank=True)

    submitted_at = models.DateTimeField()
    # RESET_SLA_HOURS of working time (PRACTICE_HOURS) after submission,
    # pushed back by the time spent waiting.
    due_at = models.DateTimeField()
    waiting_since = models.DateTimeField(null=True, blank=True)
    # While waiting on the patient: the working time still owed when the
    # wait began (negative if already overdue by that much). The due clock
    # resumes from it when the request leaves waiting.
    due_owed = models.DurationField(null=True, blank=True, editable=False)
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="assigned_reset_requests",
    )

    # The identity check, recorded before a request can be resolved.
    identity_dob_matched = models.BooleanField(default=False)
    identity_phone_matched = models.BooleanField(default=False)
    identity_email_matched = models.BooleanField(default=False)
    identity_verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    identity_verified_at = models.DateTimeField(null=True, blank=True)

    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    close_reason = models.CharField(max_length=20, choices=CloseReason.choices, blank=True)
    # The patient's language when they filed: their emails are written in it.
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")

    personal_data_purged_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-is_open", "submitted_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in Status]),
                name="resetrequest_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(reason__in=[r.value for r in Reason]),
                name="resetrequest_reason_valid",
            ),
            models.CheckConstraint(
                condition=Q(is_open=True, status__in=["new", "in_progress", "waiting"])
                | Q(is_open=False, status__in=["resolved", "closed"]),
                name="resetrequest_is_open_matches_status",
            ),
            models.CheckConstraint(
                condition=~Q(status="resolved") | (~Q(outcome="") & Q(identity_verified_at__isnull=False)),
                name="resetrequest_resolved_has_outcome_and_identity_check",
            ),
            models.CheckConstraint(
                condition=~Q(status="closed") | ~Q(close_reason=""),
                name="resetrequest_closed_has_reason",
            ),
            # A patient has at most one open request; a second submission is
            # attached to it (services.request_submit relies on this).
            models.UniqueConstraint(
                fields=["email", "date_of_birth"],
                condition=Q(is_open=True),
                name="resetrequest_one_open_per_patient",
            ),
        ]
        indexes = [
            # The staff list's default order: open first, oldest first.
            models.Index(fields=["-is_open", "submitted_at"], name="rr_queue_order"),
            # The list filtered by status, reason or assignee, in the list's
            # own order (the admin adds -pk to make it total): the database
            # reads the first page straight off the index. Without is_open in
            # them, PostgreSQL walks rr_queue_order past every open request
            # to find the first resolved one (0.3 s at a million rows).
            models.Index(fields=["status", "-is_open", "submitted_at", "-id"], name="rr_status_queue"),
            models.Index(fields=["reason", "-is_open", "submitted_at", "-id"], name="rr_reason_queue"),
            models.Index(fields=["assignee", "-is_open", "submitted_at", "-id"], name="rr_assignee_queue"),
            # Overdue (selectors.overdue_q): the list's filter and count and
            # the daily digest; is_open rides along for the list's filter.
            models.Index(
                fields=["due_at", "is_open"],
                condition=Q(status__in=["new", "in_progress"]),
                name="rr_overdue",
            ),
            # Equality and prefix (LIKE 'x%') search on PostgreSQL whatever
            # the database's collation; a plain index serves LIKE only under
            # the C collation. Ignored by SQLite, where it is a plain index.
            # The name search's UPPER(...) indexes are PostgreSQL-only: see
            # migrations/0003_queue_and_search_indexes.py.
            models.Index(fields=["email"], opclasses=["varchar_pattern_ops"], name="rr_email_prefix"),
            models.Index(fields=["last_name"], name="rr_last_name"),
            models.Index(fields=["phone"], name="rr_phone"),
            models.Index(fields=["ended_at"], name="rr_ended"),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def status_token(self) -> str:
        return self.reference.replace("-", "") + self.status_secret

    def get_status_url(self) -> str:
        return reverse("requests_app:status", kwargs={"token": self.status_token})

    @property
    def patient_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def allows(self, action: str) -> bool:
        """Whether ``action`` may be taken from the current status (the
        table alone; services.workflow.check_move says why not)."""
        return self.status in MOVES[action].from_statuses


class FamilyMember(models.Model):
    """Someone who shares the patient's portal login (same email address)."""

    reset = models.ForeignKey(ResetRequest, on_delete=models.CASCADE, related_name="family_members")
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField(null=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove a timeline event."""


class RequestEventQuerySet(models.QuerySet["RequestEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Timeline events cannot be changed.")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("Timeline events cannot be deleted.")

    def erase_messages(self) -> int:
        """The one change allowed: the retention purge blanks the text."""
        return super().update(message="")

    def record(
        self,
        reset: ResetRequest,
        kind: str,
        *,
        actor: User | None = None,
        from_status: str = "",
        to_status: str = "",
        message: str = "",
        at: datetime | None = None,
    ) -> RequestEvent:
        """Append one event to ``reset``'s timeline, in the caller's
        transaction (services call it beside the change it records)."""
        return self.create(
            reset=reset,
            kind=kind,
            actor=actor,
            from_status=from_status,
            to_status=to_status,
            message=message,
            created_at=at or timezone.now(),
        )


class RequestEvent(models.Model):
    """One line of a request's timeline. Append-only: written once by a
    service, never changed or deleted (the purge only blanks its text)."""

    class Kind(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        DUPLICATE = "duplicate", "Submitted again"
        STATUS = "status", "Status changed"
        ASSIGNED = "assigned", "Assigned"
        IDENTITY = "identity", "Identity checked"
        NOTE = "note", "Internal note"
        EMAIL_QUEUED = "email_queued", "Email queued"
        EMAIL_SENT = "email_sent", "Email sent"
        EMAIL_FAILED = "email_failed", "Email failed"
        VIEWED = "viewed", "Viewed"
        RELEASED = "released", "Released from held submissions"
        PURGED = "purged", "Personal data erased"

    reset = models.ForeignKey(ResetRequest, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    # Staff-facing text (a note, the fields of a duplicate submission).
    # Personal data may live here, so the retention purge blanks it.
    message = models.TextField(blank=True)
    created_at = models.DateTimeField()

    objects = RequestEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["reset", "created_at"], name="event_request_time")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Timeline events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Timeline events cannot be deleted.")


class OutboundEmail(models.Model):
    """An email in the outbox. Written in the same transaction as the change
    that causes it, then sent by a Celery task that claims it first, so it
    survives a broker outage and is not sent twice by two workers."""

    class Kind(models.TextChoices):
        ACKNOWLEDGMENT = "acknowledgment", "Acknowledgment"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"
        STAFF_NEW_REQUEST = "staff_new_request", "New request (staff)"
        STAFF_OVERDUE_DIGEST = "staff_overdue_digest", "Overdue digest (staff)"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    reset = models.ForeignKey(
        ResetRequest,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="emails",
    )
    kind = models.CharField(max_length=24, choices=Kind.choices)
    to = models.EmailField(max_length=254)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Earliest time the sweeper may queue a pending row again (backoff).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "sending", "sent", "failed"]),
                name="outboundemail_state_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="email_state_next"),
            models.Index(fields=["reset", "created_at"], name="email_request_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_for_patient(self) -> bool:
        """A patient's email (in their language, replies to the front desk,
        sent first) rather than one for staff."""
        return self.kind in PATIENT_EMAIL_KINDS

    @property
    def message_id(self) -> str:
        """Stable across retries, so a mail client shows a resent copy once."""
        # DEFAULT_FROM_EMAIL may carry a display name ("Front desk <a@b>").
        domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "localhost"
        # The creation time keeps ids unique across databases and resets.
        return f"<outbox-{self.pk}.{int(self.created_at.timestamp() * 1_000_000)}@{domain}>"


class HeldSubmission(models.Model):
    """A submission that looked automated (the honeypot, a form sent back
    too fast, no valid timing value) or came past the per-email limit with
    no open request to join. It looked accepted to whoever sent it; it is no
    reset request yet: no timeline, no open-request slot, no email. Staff
    release it (services.held: filed as if just submitted) or delete it;
    HELD_RETENTION_DAYS after it came in it is deleted."""

    class Why(models.TextChoices):
        HONEYPOT = "honeypot", "Filled in the hidden field"
        TOO_FAST = "too_fast", "Sent back too fast"
        NO_TIMING = "no_timing", "No valid timing value (not from our page)"
        EMAIL_LIMIT = "email_limit", "Past the per-email limit"

    why = models.CharField(max_length=20, choices=Why.choices)
    received_at = models.DateTimeField()
    # The reference the sender was shown; a released submission keeps it
    # (services.held), so a real patient's reference stays true.
    reference = models.CharField(max_length=9, unique=True, editable=False)
    # What the form said, as forms.py cleaned it (a Submission).
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField()
    email = models.EmailField(max_length=254)
    phone = models.CharField(max_length=32)
    appointment_date = models.DateField()
    reason = models.CharField(max_length=20, choices=Reason.choices)
    details = models.TextField(max_length=1000, blank=True)
    # [[first name, last name, ISO date of birth], …]
    family = models.JSONField(default=list, blank=True)
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")

    class Meta:
        ordering = ["-received_at", "-pk"]
        indexes = [models.Index(fields=["received_at"], name="held_received")]

    def __str__(self) -> str:
        return f"Held submission #{self.pk}"

    @property
    def patient_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class ExportRecord(models.Model):
    """One CSV export of the request list: who, when, with which filter and
    how many rows, for an auditor. Written before the first row leaves."""

    exported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    exported_at = models.DateTimeField()
    # The list's query string (filters, search, order) as the export saw it.
    query = models.TextField(blank=True)
    rows = models.PositiveIntegerField()

    class Meta:
        ordering = ["-exported_at", "-pk"]

    def __str__(self) -> str:
        return f"Export #{self.pk}"


PATIENT_EMAIL_KINDS = frozenset(
    {OutboundEmail.Kind.ACKNOWLEDGMENT, OutboundEmail.Kind.RESOLVED, OutboundEmail.Kind.CLOSED}
)


class HelpFeedback(models.Model):
    """How many patients answered the guide's "Did this solve it?" with yes
    or no, per end step (guide_tree.STEPS) and per practice day: counts
    only. No address, no cookie, nothing that tells one patient from another.

    ``record`` adds one answer, race-safe: an atomic ``count = count + 1``
    on the day's row, which is created by the first answer of the day."""

    class Answer(models.TextChoices):
        YES = "yes", "Yes"
        NO = "no", "No"

    day = models.DateField()
    step = models.SlugField(max_length=40, db_index=False)
    answer = models.CharField(max_length=3, choices=Answer.choices)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day", "step", "answer"]
        constraints = [
            # Day first: the dashboard reads the last 30 days from this index.
            models.UniqueConstraint(fields=["day", "step", "answer"], name="help_feedback_one_row_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.step} {self.answer}: {self.count}"

    @classmethod
    def record(cls, *, step: str, answer: str, day: date) -> None:
        """One more ``answer`` for ``step`` on ``day``."""
        row = cls.objects.filter(day=day, step=step, answer=answer)
        if row.update(count=models.F("count") + 1):
            return
        try:
            # In a savepoint: a request that lost the race to create the row
            # must not break an outer transaction.
            with transaction.atomic():
                cls.objects.create(day=day, step=step, answer=answer, count=1)
        except IntegrityError:
            # Created by a concurrent answer since the update above: the
            # unique constraint kept it to one row; count on it.
            row.update(count=models.F("count") + 1)
