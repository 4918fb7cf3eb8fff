"""Messages to the patient: one of the practice's templates, its placeholders
filled in, stored as sent, emailed through the outbox and shown on the
patient's status page.

No free text reaches a patient: staff choose a template, and only the
practice's settings and the request's reference go into it. The text is
stored with the message, so a later edit of the template changes neither
the email still in the outbox nor what the status page shows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..exceptions import ConcurrentChange, TransitionNotAllowed, WorkflowError
from ..models import MessageTemplate, OutboundEmail, PatientMessage, RequestEvent, ResetRequest
from ..models.messages import validate_placeholders
from ..outbox.queue import email_queue
from ..phones import phone_display

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def placeholder_values(reset: ResetRequest) -> dict[str, str]:
    """What each of PLACEHOLDERS stands for in a message about ``reset``:
    a value for each of its keys, and nothing else."""
    return {
        "practice_name": settings.PRACTICE_NAME,
        "practice_phone": phone_display(settings.PRACTICE_PHONE),
        "practice_contact_email": settings.PRACTICE_CONTACT_EMAIL,
        "portal_name": settings.PORTAL_NAME,
        "reference": reset.reference,
    }


def message_text(template: MessageTemplate, reset: ResetRequest, language: str | None = None) -> str:
    """The text the patient of ``reset`` reads: ``template`` in the
    request's language (or ``language``), its placeholders filled in.

    A template whose braces are not exactly PLACEHOLDERS (the admin refuses
    one, but a row may be written some other way) raises WorkflowError
    rather than sending the patient half-filled text or failing the page:
    the check runs again here, before str.format_map sees the text, so an
    attribute or index lookup (``{reference.__class__}``) is never made.
    """
    body = template.body(language or reset.language)
    try:
        validate_placeholders(body)
        return body.format_map(placeholder_values(reset))
    except (ValidationError, KeyError, IndexError, AttributeError, ValueError) as exc:
        logger.warning("message template %s cannot be filled in: %s", template.pk, type(exc).__name__)
        raise WorkflowError(
            f"The message “{template.title}” has a placeholder that cannot be filled in; "
            "a practice manager can correct it under Message templates."
        ) from exc


def reset_send_message(
    *, reset_id: int, actor: User | None, template_id: int, expected_status: str | None = None
) -> PatientMessage:
    """Send the patient of an open request one of the active templates, in
    the request's language: the message as sent, its email in the outbox
    (linked to it) and a timeline event naming the template and the text,
    in one transaction; the email goes to the broker after commit.

    Refused with ConcurrentChange if the request's status is no longer
    ``expected_status`` (what the staff member's page showed), with
    TransitionNotAllowed for a request that has ended (a message asks the
    patient to do something about a request still being worked), and with
    WorkflowError for a template that is gone or no longer offered.
    """
    with transaction.atomic():
        # The row lock orders this against a move made at the same moment:
        # a message is never queued for a request that has just ended.
        reset = ResetRequest.objects.select_for_update().get(pk=reset_id)
        if expected_status is not None and reset.status != expected_status:
            raise ConcurrentChange(
                f"{reset.reference} was changed by someone else; it is now {reset.get_status_display().lower()}. "
                "No message was sent."
            )
        if not reset.is_open or reset.personal_data_purged_at is not None:
            raise TransitionNotAllowed(
                f"{reset.reference} has ended; messages go only to the patients of open requests."
            )
        template = MessageTemplate.objects.filter(pk=template_id, is_active=True).first()
        if template is None:
            raise WorkflowError("That message is no longer offered.")
        text = message_text(template, reset)
        now = timezone.now()
        message = PatientMessage.objects.create(
            reset=reset, template=template, language=reset.language, body=text, sent_by=actor, created_at=now
        )
        RequestEvent.objects.record(
            reset, RequestEvent.Kind.MESSAGE, actor=actor, message=f"{template.title}: {text}", at=now
        )
        email_queue(reset=reset, kind=OutboundEmail.Kind.MESSAGE, to=reset.email, actor=actor, patient_message=message)
    logger.info("message template %s sent to the patient of %s", template.pk, reset.reference)
    return message
