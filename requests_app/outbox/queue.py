"""Emails into the outbox, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from ..exceptions import WorkflowError
from ..models import OutboundEmail, PatientMessage, RequestEvent, ResetRequest
from .publish import publish_together

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def email_queue(
    *,
    reset: ResetRequest | None,
    kind: str,
    to: str,
    actor: User | None = None,
    patient_message: PatientMessage | None = None,
) -> OutboundEmail:
    """Put one email in the outbox, in the caller's transaction, and hand its
    id to Celery once that transaction commits. A message to the patient
    names the PatientMessage whose text it carries."""
    [outbound] = email_queue_many(messages=[(reset, kind, to)], actor=actor, patient_message=patient_message)
    return outbound


def email_queue_many(
    *,
    messages: Sequence[tuple[ResetRequest | None, str, str]],
    actor: User | None = None,
    also_record: Sequence[RequestEvent] = (),
    patient_message: PatientMessage | None = None,
) -> list[OutboundEmail]:
    """Put several emails (``messages``: (reset request, kind, to) each) in
    the outbox with one insert for the rows and one for their timeline events
    (after the caller's own ``also_record`` events, in the same insert), in
    the caller's transaction. After commit their ids go to Celery together
    (outbox.publish.publish_together): as few messages as the batch size
    allows, a patient's emails first and on the queue workers take from
    first; each message's emails go over one SMTP connection."""
    now = timezone.now()
    rows = OutboundEmail.objects.bulk_create(
        OutboundEmail(
            reset=reset, kind=kind, to=to, created_at=now, next_attempt_at=now, patient_message=patient_message
        )
        for reset, kind, to in messages
    )
    RequestEvent.objects.bulk_create(
        [
            *also_record,
            *(
                RequestEvent(
                    reset=row.reset,
                    kind=RequestEvent.Kind.EMAIL_QUEUED,
                    actor=actor,
                    message=row.get_kind_display(),
                    created_at=now,
                )
                for row in rows
                if row.reset is not None
            ),
        ]
    )
    queued = [(row.pk, row.kind) for row in rows]
    transaction.on_commit(lambda: publish_together(queued))
    return rows


def email_send_again(*, email_id: int, actor: User | None) -> OutboundEmail:
    """Queue a failed (or sent) email again as a new outbox row: history is
    never edited. Atomic. Refused while the original is still on its way, and
    for a request whose personal data was purged."""
    with transaction.atomic():
        original = OutboundEmail.objects.select_related("reset").select_for_update().get(pk=email_id)
        if original.state in (OutboundEmail.State.PENDING, OutboundEmail.State.SENDING):
            raise WorkflowError(f"Email #{original.pk} is still being sent; wait for it to be sent or to fail.")
        if not original.to:
            raise WorkflowError(f"Email #{original.pk} has no address any more (personal data erased).")
        return email_queue(
            reset=original.reset,
            kind=original.kind,
            to=original.to,
            actor=actor,
            patient_message=original.patient_message,
        )
