"""What the public pages keep before, or instead of, a reset request: held
submissions and the guide's "Did this solve it?" counts."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.db import IntegrityError, models, transaction

from .reset_request import Reason


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
