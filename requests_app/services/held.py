"""Held submissions: what looked automated, or came past the per-email limit
with no open request to join, kept apart from reset requests until staff
release or delete it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ..exceptions import WorkflowError
from ..models import HeldSubmission, RequestEvent
from ..references import new_reference
from .submission import Submission, SubmitResult, reset_attach_quietly, reset_submit, single_statement

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


@sensitive_variables()
def held_create(*, submission: Submission, why: str) -> HeldSubmission:
    """Keep a submission that will not be filed now, with the reference its
    sender is shown. No timeline, no email, no open-request slot. One
    INSERT, atomic on its own: a bot's post costs one round trip."""
    for _ in range(5):
        try:
            with single_statement():
                held = HeldSubmission.objects.create(
                    why=why,
                    received_at=timezone.now(),
                    reference=new_reference(),
                    **submission.patient_fields(),
                    family=[[first, last, dob.isoformat()] for first, last, dob in submission.family],
                    language=submission.language,
                )
        except IntegrityError:
            continue  # a reference collision: draw another
        logger.info("reset form held id=%s why=%s", held.pk, why)
        return held
    raise RuntimeError("Could not store the held submission after 5 attempts.")


@sensitive_variables()
def reset_submit_past_email_limit(*, submission: Submission) -> str:
    """A submission past the per-email limit (SUBMIT_RATE_PER_EMAIL): kept
    without another email — on the patient's open request's timeline, or
    held when there is none. Returns the reference its sender is shown, as
    for any other submission, so the limit tells nobody the address was
    used. Each of the two steps is atomic; no transaction around both (a
    flood of these would pay its BEGIN and COMMIT): a request opened
    between them only means this one is held instead."""
    reset = reset_attach_quietly(submission=submission)
    if reset is not None:
        return reset.reference
    return held_create(submission=submission, why=HeldSubmission.Why.EMAIL_LIMIT).reference


def _submission_of(held: HeldSubmission) -> Submission:
    return Submission(
        first_name=held.first_name,
        last_name=held.last_name,
        date_of_birth=held.date_of_birth,
        email=held.email,
        phone=held.phone,
        appointment_date=held.appointment_date,
        reason=held.reason,
        details=held.details,
        family=tuple((first, last, date.fromisoformat(dob)) for first, last, dob in held.family),
        language=held.language,
    )


def held_release(*, held_id: int, actor: User) -> SubmitResult:
    """File a held submission as if it had just been submitted: a new request
    (under the reference its sender was shown) with its acknowledgment and
    the staff notice, or attached to the patient's open request with a
    fresh acknowledgment. The release is on the request's timeline with who
    did it; the held row is gone. Atomic; of two staff releasing the same
    row at once, one files it and the other is told it is gone."""
    with transaction.atomic():
        held = HeldSubmission.objects.select_for_update().filter(pk=held_id).first()
        if held is None:
            raise WorkflowError("That held submission was released or deleted by someone else.")
        result = reset_submit(submission=_submission_of(held), reference=held.reference)
        RequestEvent.objects.record(
            result.reset,
            RequestEvent.Kind.RELEASED,
            actor=actor,
            message=f"Held as “{held.get_why_display()}” on {timezone.localtime(held.received_at):%Y-%m-%d %H:%M}",
        )
        held.delete()
    logger.info("held submission id=%s released as %s", held_id, result.reset.reference)
    return result


def held_delete(*, held_ids: Sequence[int], actor: User) -> int:
    """Delete held submissions as spam; return how many went."""
    deleted, _ = HeldSubmission.objects.filter(pk__in=held_ids).delete()
    logger.info("%s held submissions deleted by user id=%s", deleted, actor.pk)
    return deleted


def held_purge_expired() -> int:
    """Delete the held submissions that came in more than
    HELD_RETENTION_DAYS ago and were never released. Idempotent."""
    cutoff = timezone.now() - timedelta(days=settings.HELD_RETENTION_DAYS)
    deleted, _ = HeldSubmission.objects.filter(received_at__lt=cutoff).delete()
    if deleted:
        logger.info("deleted %s held submissions past their retention", deleted)
    return deleted
