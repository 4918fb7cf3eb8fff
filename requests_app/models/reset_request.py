"""Reset requests: their statuses, the table of allowed moves, the family
members who share the patient's login."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.translation import gettext_lazy as _

from ..references import new_status_secret


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
    # The provider had not yet signed the visit notes; now they have and the
    # portal's invitation went out.
    NOTES_SIGNED = "notes_signed", "Visit notes signed; invitation sent"
    OTHER = "other", "Other"


class CloseReason(models.TextChoices):
    DUPLICATE = "duplicate", "Duplicate"
    UNVERIFIED = "unverified", "Identity could not be verified"
    SPAM = "spam", "Spam"
    WITHDRAWN = "withdrawn", "Withdrawn by the patient"
    OTHER = "other", "Other"


class ReopenReason(models.TextChoices):
    STILL_NO_ACCESS = "still_no_access", "The patient still cannot get in"
    CLOSED_BY_MISTAKE = "closed_by_mistake", "Ended by mistake"
    OTHER = "other", "Other"


class Action(models.TextChoices):
    """What staff do to a request; each action makes exactly one kind of move."""

    START = "start", "Start"
    WAIT = "wait", "Mark waiting on patient"
    RESUME = "resume", "Patient answered: back to in progress"
    RESOLVE = "resolve", "Resolve"
    CLOSE = "close", "Close"
    REOPEN = "reopen", "Reopen"


OPEN_STATUSES = frozenset({Status.NEW, Status.IN_PROGRESS, Status.WAITING})


@dataclass(frozen=True)
class Move:
    """From which statuses an action may be taken, and where it leads."""

    from_statuses: frozenset[str]
    to_status: str


# The only status moves there are, keyed by the action that makes each, so
# that no action can make another's move. services.workflow.check_move
# enforces it for every caller; the admin offers what it allows.
# Three actions lead to in progress, each from its own statuses: start only
# from new, resume only from waiting, reopen only from an ended request.
MOVES: dict[str, Move] = {
    Action.START: Move(frozenset({Status.NEW}), Status.IN_PROGRESS),
    Action.WAIT: Move(frozenset({Status.IN_PROGRESS}), Status.WAITING),
    Action.RESUME: Move(frozenset({Status.WAITING}), Status.IN_PROGRESS),
    Action.RESOLVE: Move(frozenset({Status.IN_PROGRESS}), Status.RESOLVED),
    Action.CLOSE: Move(OPEN_STATUSES, Status.CLOSED),
    # Within REOPEN_DAYS of the end (services.workflow.check_move).
    Action.REOPEN: Move(frozenset({Status.RESOLVED, Status.CLOSED}), Status.IN_PROGRESS),
}


class ResetRequest(models.Model):
    Status = Status
    Reason = Reason
    Outcome = Outcome
    CloseReason = CloseReason
    ReopenReason = ReopenReason

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

    # The email provider reported that an email to the patient bounced, was
    # rejected or was marked as spam (delivery_feedback.py): the address on
    # file does not work, so the front desk calls the patient. Set with the
    # time of the report, cleared when staff correct the address
    # (services.reset_correct_email). The flag mirrors "the time is set" (a
    # constraint keeps it true) so that the queue can order by it from an
    # index: an open request with it comes first.
    email_undeliverable = models.BooleanField(default=False, editable=False)
    email_undeliverable_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        # Open first; among them, those whose email address does not work
        # (call the patient); then oldest first.
        ordering = ["-is_open", "-email_undeliverable", "submitted_at"]
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
            models.CheckConstraint(
                condition=Q(email_undeliverable=True, email_undeliverable_at__isnull=False)
                | Q(email_undeliverable=False, email_undeliverable_at__isnull=True),
                name="resetrequest_undeliverable_has_time",
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
            # Open or ended, then by submission: the charts' weekly counts
            # read their range of submission times off it (charts.py).
            models.Index(fields=["-is_open", "submitted_at"], name="rr_queue_order"),
            # The staff list's default order: open first, those whose email
            # does not work first among them, oldest first (the admin adds
            # -pk to make it total).
            models.Index(
                fields=["-is_open", "-email_undeliverable", "submitted_at", "-id"], name="rr_queue_undeliverable"
            ),
            # The list filtered by status, reason or assignee, in the list's
            # own order: the database reads the first page straight off the
            # index. Without is_open in them, PostgreSQL walks the queue's
            # index past every open request to find the first resolved one
            # (0.3 s at a million rows).
            models.Index(
                fields=["status", "-is_open", "-email_undeliverable", "submitted_at", "-id"], name="rr_status_queue2"
            ),
            models.Index(
                fields=["reason", "-is_open", "-email_undeliverable", "submitted_at", "-id"], name="rr_reason_queue2"
            ),
            models.Index(
                fields=["assignee", "-is_open", "-email_undeliverable", "submitted_at", "-id"],
                name="rr_assignee_queue2",
            ),
            # The list's "email address does not work" filter: few rows.
            models.Index(
                fields=["-is_open", "submitted_at", "-id"],
                condition=Q(email_undeliverable=True),
                name="rr_undeliverable",
            ),
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
        return status_path(self.status_token)

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


# What reverse writes as it is in a path: a status token's characters (the
# reference's and token_urlsafe's).
_AS_IT_IS = re.compile(r"[A-Za-z0-9_-]+")


def status_path(token: str) -> str:
    """``reverse("requests_app:status", kwargs={"token": token})``, the same
    path, reversed once per script prefix and URL conf rather than for each
    link: every email carries one, and reversing cost more than the rest of
    the email's context."""
    if not _AS_IT_IS.fullmatch(token):
        return reverse("requests_app:status", kwargs={"token": token})
    before, after = _status_path_around(get_script_prefix(), get_urlconf())
    return before + token + after


@functools.lru_cache(maxsize=16)
def _status_path_around(script_prefix: str, urlconf: str | None) -> tuple[str, str]:
    # The arguments are the key: reverse reads both where they are set.
    before, _, after = reverse("requests_app:status", kwargs={"token": "T0K3N"}).rpartition("T0K3N")
    return before, after
