"""A patient's form becomes a reset request (or joins their open one)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.views.decorators.debug import sensitive_variables

from ..models import FamilyMember, OutboundEmail, RequestEvent, ResetRequest, Status
from ..outbox.queue import email_queue_many
from ..references import new_reference
from ..working_hours import due_after

logger = logging.getLogger(__name__)

# A reference collision (about 1 in 10^11) or a concurrent first submission
# of the same patient is tried again this many times.
SUBMIT_ATTEMPTS = 5


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

    def patient_fields(self) -> dict[str, Any]:
        """What the form said, under the field names a ResetRequest and a
        HeldSubmission both store it under (the family and language apart)."""
        return {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "date_of_birth": self.date_of_birth,
            "email": self.email,
            "phone": self.phone,
            "appointment_date": self.appointment_date,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass(frozen=True)
class SubmitResult:
    reset: ResetRequest
    created: bool


# Error reports show no local variable of this call or of anything it calls.
@sensitive_variables()
def reset_submit(*, submission: Submission, reference: str | None = None) -> SubmitResult:
    """File a reset request, or attach it to the patient's open one.

    Atomic: the request, its first event and its acknowledgment (plus the
    staff notification) are stored together or not at all; the emails are
    queued after commit. A second submission with the same email and date of
    birth while a request is open is recorded on that request's timeline and
    gets a fresh acknowledgment, so the caller cannot tell the two apart.
    ``reference``: the one a new request takes (a released held submission
    keeps the reference its sender was shown), if it is still free.
    """
    for _ in range(SUBMIT_ATTEMPTS):
        try:
            with transaction.atomic():
                return _submit_once(submission, reference or new_reference())
        except IntegrityError:
            # Either a reference collision or a concurrent first submission
            # by the same patient won the race: try again (with a reference
            # of our own), which attaches to that one.
            reference = None
            continue
    raise RuntimeError(f"Could not store the reset request after {SUBMIT_ATTEMPTS} attempts.")


@sensitive_variables()
def reset_attach_quietly(*, submission: Submission) -> ResetRequest | None:
    """Record a submission on the patient's open request without emailing
    anyone (it came past the per-email limit); None when the patient has no
    open request. Atomic."""
    with transaction.atomic():
        existing = _open_request_of(submission)
        if existing is not None:
            RequestEvent.objects.record(
                existing,
                RequestEvent.Kind.DUPLICATE,
                message=_describe(submission) + "\n(Past the per-email limit: no email was sent.)",
            )
        return existing


def _open_request_of(submission: Submission) -> ResetRequest | None:
    return (
        ResetRequest.objects.select_for_update()
        .filter(email=submission.email, date_of_birth=submission.date_of_birth, is_open=True)
        .first()
    )


def _submit_once(submission: Submission, reference: str) -> SubmitResult:
    now = timezone.now()
    existing = _open_request_of(submission)
    if existing is not None:
        # The request keeps the language it was filed in (a staff member may
        # change it): whoever else knows the patient's email and date of
        # birth cannot switch the patient's emails to another language.
        email_queue_many(
            messages=[(existing, OutboundEmail.Kind.ACKNOWLEDGMENT, existing.email)],
            also_record=[
                RequestEvent(
                    reset=existing, kind=RequestEvent.Kind.DUPLICATE, message=_describe(submission), created_at=now
                )
            ],
        )
        return SubmitResult(reset=existing, created=False)

    reset = ResetRequest.objects.create(
        reference=reference,
        **submission.patient_fields(),
        language=_patient_language(submission.language),
        submitted_at=now,
        due_at=due_after(now),
    )
    FamilyMember.objects.bulk_create(
        FamilyMember(reset=reset, first_name=first, last_name=last, date_of_birth=dob)
        for first, last, dob in submission.family
    )
    # Both emails in one go: one insert for the rows, one for every event
    # (the "submitted" one first).
    email_queue_many(
        messages=[
            (reset, OutboundEmail.Kind.ACKNOWLEDGMENT, reset.email),
            (reset, OutboundEmail.Kind.STAFF_NEW_REQUEST, settings.STAFF_NOTIFY_EMAIL),
        ],
        also_record=[RequestEvent(reset=reset, kind=RequestEvent.Kind.SUBMITTED, to_status=Status.NEW, created_at=now)],
    )
    logger.info("reset request submitted reference=%s", reset.reference)
    return SubmitResult(reset=reset, created=True)


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
