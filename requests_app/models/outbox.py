"""The outbox: every email is a row before it is a Celery message."""

from __future__ import annotations

import functools
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
        # Reported back by the email provider after it was sent
        # (delivery_feedback.py): a hard bounce or a rejection, or a spam
        # complaint. Only with EMAIL_PROVIDER set.
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Marked as spam"

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
    # The email provider's id of the message (anymail_status.message_id),
    # stored when it was sent through EMAIL_PROVIDER: the provider's
    # bounce and complaint reports name the message by it. Empty for SMTP.
    provider_message_id = models.CharField(max_length=255, blank=True, default="", editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "sending", "sent", "failed", "bounced", "complained"]),
                name="outboundemail_state_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="email_state_next"),
            models.Index(fields=["reset", "created_at"], name="email_request_time"),
            # A provider's report finds its row by the provider's message id.
            models.Index(
                fields=["provider_message_id"], condition=~Q(provider_message_id=""), name="email_provider_message"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    # Declared by Django (and django-stubs) for every field with choices; this one replaces it.
    def get_kind_display(self) -> str:  # type: ignore[no-redef]
        """Django's get_kind_display, the same text, without the dict of the
        choices Django's builds on every call (9.6 against 1.8 µs a call,
        once for every email sent and three times for every submission)."""
        try:
            return str(self.Kind(self.kind).label)
        except ValueError:
            return str(self.kind)  # as Django's gives back a value it does not know

    @property
    def is_for_patient(self) -> bool:
        """A patient's email (in their language, replies to the front desk,
        sent first) rather than one for staff."""
        return self.kind in PATIENT_EMAIL_KINDS

    @property
    def message_id(self) -> str:
        """Stable across retries, so a mail client shows a resent copy once."""
        domain = _message_id_domain(str(settings.DEFAULT_FROM_EMAIL))
        # The creation time keeps ids unique across databases and resets.
        return f"<outbox-{self.pk}.{int(self.created_at.timestamp() * 1_000_000)}@{domain}>"


@functools.lru_cache(maxsize=4)
def _message_id_domain(from_email: str) -> str:
    """The domain of DEFAULT_FROM_EMAIL, which may carry a display name
    ("Front desk <a@b>"): the same setting for every email, parsed once."""
    return parseaddr(from_email)[1].rpartition("@")[2] or "localhost"


class DeliveryReport(models.Model):
    """A delivery report (bounce, complaint, deferral) already taken from the
    email provider's webhook, by the provider's own id of the report: a
    provider that sends it again (its retry after a time-out) changes
    nothing more. No personal data: the provider's name, an opaque id and
    when it came. Kept REPORTS_KEPT_DAYS (delivery_feedback.py), longer than
    any provider retries."""

    provider = models.CharField(max_length=20)
    report_id = models.CharField(max_length=200)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "report_id"], name="deliveryreport_once"),
        ]
        indexes = [models.Index(fields=["received_at"], name="deliveryreport_received")]

    def __str__(self) -> str:
        return f"{self.provider} report {self.report_id}"


PATIENT_EMAIL_KINDS = frozenset(
    {
        OutboundEmail.Kind.ACKNOWLEDGMENT,
        OutboundEmail.Kind.RESOLVED,
        OutboundEmail.Kind.CLOSED,
        OutboundEmail.Kind.REOPENED,
        OutboundEmail.Kind.MESSAGE,
    }
)
