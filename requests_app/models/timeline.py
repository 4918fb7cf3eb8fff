"""The timeline: every event of a reset request, append-only."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone

from .reset_request import ResetRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import User


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
        # Delivery feedback from the email provider (EMAIL_PROVIDER).
        EMAIL_BOUNCED = "email_bounced", "Email did not arrive"
        EMAIL_DELAYED = "email_delayed", "Email delayed"
        EMAIL_CORRECTED = "email_corrected", "Email address corrected"
        VIEWED = "viewed", "Viewed"
        RELEASED = "released", "Released from held submissions"
        MESSAGE = "message", "Message to the patient"
        LANGUAGE = "language", "Language changed"
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
