"""Messages to the patient: the practice's templates, and each message as
it was sent.

No free text reaches a patient: staff pick a template, the practice's
placeholders are filled in, and the resulting text is stored with the
message, so that a later edit of the template changes neither queued mail
nor what a status page already shows. Editing templates needs the
``change_messagetemplate`` permission, which the staff group does not have.
"""

from __future__ import annotations

from string import Formatter
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .reset_request import ResetRequest

# The placeholders a template may use; services.messages fills them in.
PLACEHOLDERS = {
    "practice_name": "the practice's name",
    "practice_phone": "the practice's phone number",
    "practice_contact_email": "the practice's email address",
    "portal_name": "the patient portal's name",
    "reference": "the request's reference number",
}
BODY_MAX_LENGTH = 1000


def validate_placeholders(text: str) -> None:
    """Refuse a template whose braces are not exactly the known placeholders."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValidationError(f"Unbalanced braces ({exc}); write a placeholder as {{practice_phone}}.") from exc
    unknown = sorted({name for name, _, _ in fields if name not in PLACEHOLDERS})
    if unknown:
        raise ValidationError(
            "Unknown placeholder %(unknown)s; use only %(known)s.",
            params={
                "unknown": ", ".join("{" + name + "}" for name in unknown),
                "known": ", ".join("{" + name + "}" for name in PLACEHOLDERS),
            },
        )
    if any(spec or conversion for _, spec, conversion in fields):
        raise ValidationError("Write placeholders plainly, as {practice_phone}, without formatting.")


class MessageTemplate(models.Model):
    """One message the practice may send to a patient, in each language
    patients file in (settings.LANGUAGES: a body_<code> per language)."""

    title = models.CharField(max_length=100, unique=True, help_text="What staff see when they choose it.")
    body_en = models.TextField("text in English", max_length=BODY_MAX_LENGTH, validators=[validate_placeholders])
    body_es = models.TextField("text in Spanish", max_length=BODY_MAX_LENGTH, validators=[validate_placeholders])
    is_active = models.BooleanField("offered to staff", default=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="Lower comes first in the staff's list.")

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return self.title

    def body(self, language: str) -> str:
        """The text in ``language`` (English for a language without one)."""
        return str(getattr(self, f"body_{language}", "") or self.body_en)


class PatientMessage(models.Model):
    """A message sent to the patient of one request: the text exactly as
    sent (placeholders filled, in the request's language), who sent it and
    when. Shown on the patient's status page; emailed through the outbox."""

    reset = models.ForeignKey(ResetRequest, on_delete=models.PROTECT, related_name="patient_messages")
    template = models.ForeignKey(MessageTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    body = models.TextField()
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["reset", "created_at"], name="message_request_time")]

    def __str__(self) -> str:
        return f"Message to the patient of {self.reset_id} at {self.created_at:%Y-%m-%d %H:%M}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("A message as sent is never changed.")
        super().save(*args, **kwargs)
