"""The outbox: every email is a row before it is a Celery message."""

from __future__ import annotations

from email.utils import parseaddr

from django.conf import settings
from django.db import models
from django.db.models import Q

from .reset_request import ResetRequest


class OutboundEmail(models.Model):
    """An email in the outbox. Written in the same transaction as the change
    that causes it, then sent by a Celery task that claims it first, so it
    survives a broker outage and is not sent twice by two workers."""

    class Kind(models.TextChoices):
        ACKNOWLEDGMENT = "acknowledgment", "Acknowledgment"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"
        REOPENED = "reopened", "Reopened"
        MESSAGE = "message", "Message to the patient"
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
    # A message to the patient: its text as sent (kind "message" only).
    patient_message = models.ForeignKey(
        "PatientMessage", null=True, blank=True, on_delete=models.PROTECT, related_name="emails"
    )

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


PATIENT_EMAIL_KINDS = frozenset(
    {
        OutboundEmail.Kind.ACKNOWLEDGMENT,
        OutboundEmail.Kind.RESOLVED,
        OutboundEmail.Kind.CLOSED,
        OutboundEmail.Kind.REOPENED,
        OutboundEmail.Kind.MESSAGE,
    }
)
