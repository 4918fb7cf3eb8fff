"""Delivery feedback: what the email provider (EMAIL_PROVIDER) reports about
a message after it was sent, back on its outbox row, its request's timeline
and, for a patient's email, the queue.

With EMAIL_PROVIDER set the outbox sends through that provider's
django-anymail backend and stores the provider's id of each message
(``sent_message_id``, called where outbox/send.py marks a row sent). The
provider's tracking webhook (anymail's view, under /email/anymail/, only for
the configured provider and only once its authentication is configured)
reports:

- a bounce or a rejection: the row becomes ``bounced``; a spam complaint:
  ``complained``; with the provider's reason (addresses taken out) in its
  ``last_error``, which the retention purge erases with the rest;
- for a patient's email to the address still on file, the request is marked
  ``email_undeliverable`` — at the top of the queue while open, under the
  list's "Email address does not work" filter open or ended (an ended
  request is not reopened) — until staff correct the address
  (services.reset_correct_email);
- a deferral (the provider tries again) and a failure at the provider: the
  timeline only (a failure also fails the row);
- anything else (delivered, opened, clicked…) is not kept: open and click
  tracking are off (settings.ANYMAIL's SEND_DEFAULTS).

A report is taken once: the provider's id of it (or, where the provider
gives none, a hash of what it says) is kept in DeliveryReport, so that its
retry answers 200 and changes nothing; a report that names no message of
ours is logged (its provider and type, nothing personal) and ignored. A
call that is not authenticated answers 400 (401 for Amazon SNS, which asks
so before it sends its credentials) or 403 with nothing changed, and so
does a body that cannot be read as the provider's report. A failure of ours
(the database) answers 500, and the provider sends the report again later.

A provider that refuses a message at sending time (Postmark's inactive
recipients) raises AnymailRecipientsRefused in the outbox, which fails the
row as before; the ``post_send`` receiver below marks the request first.

The receivers connect when this package is imported: outbox/send.py
imports it (every process: the app's ready() loads the tasks), and so does
webhooks.py (the views and URLs, which portal_reset/urls.py includes).
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason, post_send, tracking
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.dispatch import receiver
from django.utils import timezone

from ..models import OutboundEmail, RequestEvent, ResetRequest
from ..models.outbox import DeliveryReport

logger = logging.getLogger(__name__)

# Longer than any provider retries a report (SendGrid: 72 hours).
REPORTS_KEPT_DAYS = 30
# The provider's reason as kept on the row and the timeline.
REASON_MAX_LENGTH = 400

# Our name of each provider (EMAIL_PROVIDER), its name as people know it,
# and anymail's tracking webhook view for it.
PROVIDER_NAMES = {
    "postmark": "Postmark",
    "amazon_ses": "Amazon SES",
    "mailgun": "Mailgun",
    "sendgrid": "SendGrid",
    "brevo": "Brevo",
}
_ESP_NAMES = {esp: key for key, esp in PROVIDER_NAMES.items()}

_BOUNCED = frozenset({EventType.BOUNCED, EventType.REJECTED})
_TAKEN = _BOUNCED | {EventType.COMPLAINED, EventType.DEFERRED, EventType.FAILED}

# anymail's normalized reject reasons, for a report that gives no text.
_REJECT_REASONS = {
    RejectReason.INVALID: "the address is not valid",
    RejectReason.BOUNCED: "the address bounced before",
    RejectReason.TIMED_OUT: "delivery timed out before",
    RejectReason.BLOCKED: "blocked by the provider's policy",
    RejectReason.SPAM: "the address reported an earlier email as spam",
    RejectReason.UNSUBSCRIBED: "the address unsubscribed",
    RejectReason.OTHER: "no reason given",
}
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
CALL_THE_PATIENT = "The email address does not work: call the patient."


# --- Sending -----------------------------------------------------------------


def sent_message_id(message: EmailMessage) -> str:
    """The provider's id of a message anymail just sent (what its reports
    name it by), to store on the outbox row; empty for any other backend
    (SMTP, the local .eml files)."""
    status = getattr(message, "anymail_status", None)
    message_id = getattr(status, "message_id", None)
    return message_id[:255] if isinstance(message_id, str) else ""


_OUTBOX_MESSAGE_ID = re.compile(r"<outbox-(\d+)\.(\d+)@")


@receiver(post_send, dispatch_uid="requests_app.delivery_feedback.refused_at_sending")
def _refused_at_sending(sender: Any, message: EmailMessage, status: Any, esp_name: str, **kwargs: Any) -> None:
    """A provider that refuses the recipient when asked to send (Postmark's
    inactive recipients: an earlier hard bounce or spam complaint): the
    outbox fails the row (AnymailRecipientsRefused, raised right after this
    signal); here the request gets the mark, once per row."""
    statuses = set(getattr(status, "status", None) or ())
    if not statuses or not statuses <= {"rejected", "invalid"}:
        return
    found = _OUTBOX_MESSAGE_ID.match(str(message.extra_headers.get("Message-ID", "")))
    if found is None:
        return
    provider = _ESP_NAMES.get(esp_name, settings.EMAIL_PROVIDER or esp_name)
    reason = "the address is not valid" if statuses == {"invalid"} else "it sends nothing more to this address"
    try:
        with transaction.atomic():
            email = OutboundEmail.objects.select_related("reset").filter(pk=int(found[1])).first()
            if email is None or email.reset is None or not _take_once(provider, f"refused:{email.pk}"):
                return
            name = PROVIDER_NAMES.get(provider, esp_name)
            text = f"{email.get_kind_display()} refused by {name} before sending: {reason}."
            _record_on_request(email, text, mark=email.is_for_patient)
    except Exception as exc:
        # The outbox fails the row all the same; this must not change how.
        logger.warning("could not record a refusal at sending: %s", type(exc).__name__)
        return
    logger.warning("email id=%s kind=%s refused by %s before sending", email.pk, email.kind, provider)


# --- Reports from the provider's webhook ---------------------------------------


@receiver(tracking, dispatch_uid="requests_app.delivery_feedback.report")
def _on_report(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    delivery_report_take(provider=_ESP_NAMES.get(esp_name, settings.EMAIL_PROVIDER), event=event)


def delivery_report_take(*, provider: str, event: AnymailTrackingEvent) -> str:
    """Apply one report of the provider (anymail's normalized event) to the
    outbox row it names; return what became of it: "ignored" (an event
    type not kept), "unknown" (no row has its message id), "again" (this
    report was taken before), or the event type taken. Atomic; the same
    report twice, or two at once, is taken once (DeliveryReport's unique
    key, the row locked meanwhile)."""
    if event.event_type not in _TAKEN:
        return "ignored"
    message_id = event.message_id if isinstance(event.message_id, str) else ""
    now = timezone.now()
    with transaction.atomic():
        email = (
            OutboundEmail.objects.select_for_update(of=("self",))
            .select_related("reset")
            .filter(provider_message_id=message_id)
            .order_by("pk")
            .first()
            if message_id
            else None
        )
        if email is None:
            logger.warning("%s report (%s) names no message of the outbox: ignored", provider, event.event_type)
            return "unknown"
        if not _take_once(provider, _report_id(event)):
            logger.info("%s report (%s) for email id=%s taken before", provider, event.event_type, email.pk)
            return "again"
        DeliveryReport.objects.filter(received_at__lt=now - timedelta(days=REPORTS_KEPT_DAYS)).delete()
        _apply(email, provider=provider, event=event)
    logger.info("%s report (%s) for email id=%s kind=%s", provider, event.event_type, email.pk, email.kind)
    return str(event.event_type)


def _take_once(provider: str, report_id: str) -> bool:
    """Record the report as taken; False if it was taken before."""
    try:
        with transaction.atomic():
            DeliveryReport.objects.create(provider=provider, report_id=report_id, received_at=timezone.now())
    except IntegrityError:
        return False
    return True


def _report_id(event: AnymailTrackingEvent) -> str:
    """The provider's id of the report; where it gives none (Brevo), a hash
    of what the report says, the same for its retry. For Mailgun, whose
    signature token (anymail's event_id) may differ on a retry, its event's
    own id with its time (the id alone is unique within a day only)."""
    event_id = str(event.event_id or "")
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    mailgun_event = esp_event.get("event-data")
    if isinstance(mailgun_event, dict) and mailgun_event.get("id"):
        event_id = f"mailgun:{mailgun_event['id']}:{mailgun_event.get('timestamp', '')}"
    if event_id and len(event_id) <= 200:
        return event_id
    said = "|".join(
        str(part or "")
        for part in (
            event_id,
            event.event_type,
            event.message_id,
            event.timestamp.isoformat() if event.timestamp else "",
            event.description,
            event.mta_response,
        )
    )
    return "sha256:" + hashlib.sha256(said.encode()).hexdigest()


def provider_reason(event: AnymailTrackingEvent) -> str:
    """The provider's words for what happened, on one line, with every
    email address in them replaced: the row already says where it went."""
    parts: list[str] = []
    for text in (event.description, event.mta_response):
        line = " ".join(str(text or "").split()).strip(" .;")
        if line and line not in parts:
            parts.append(line)
    if not parts and event.reject_reason:
        parts.append(_REJECT_REASONS.get(event.reject_reason, str(event.reject_reason)))
    reason = _ADDRESS.sub("[address]", "; ".join(parts)) or "no reason given"
    return reason[:REASON_MAX_LENGTH]


def _apply(email: OutboundEmail, *, provider: str, event: AnymailTrackingEvent) -> None:
    name = PROVIDER_NAMES.get(provider, provider)
    kind = email.get_kind_display()
    reason = provider_reason(event)
    if event.event_type == EventType.DEFERRED:
        _record_on_request(
            email, f"{kind}: delivery delayed, {name} tries again ({reason}).", kind=RequestEvent.Kind.EMAIL_DELAYED
        )
        return
    erased = email.reset is not None and email.reset.personal_data_purged_at is not None
    if event.event_type == EventType.FAILED:
        changed = _change_state(email, OutboundEmail.State.FAILED, "" if erased else f"{name}: {reason}")
        if changed:
            _record_on_request(email, f"{kind} not sent by {name}: {reason}.", kind=RequestEvent.Kind.EMAIL_FAILED)
        return
    if event.event_type == EventType.COMPLAINED:
        state, what = OutboundEmail.State.COMPLAINED, f"{kind} marked as spam ({name}: {reason})."
    else:
        verb = "rejected" if event.event_type == EventType.REJECTED else "bounced"
        state, what = OutboundEmail.State.BOUNCED, f"{kind} {verb} ({name}: {reason})."
    if not _change_state(email, state, "" if erased else f"{name}: {reason}"):
        return  # bounced or marked as spam already: nothing more
    if email.is_for_patient:
        _record_on_request(email, what, mark=True)
    else:
        _record_on_request(email, what, kind=RequestEvent.Kind.EMAIL_BOUNCED)
        logger.warning("a staff email (id=%s kind=%s) %s: check STAFF_NOTIFY_EMAIL", email.pk, email.kind, state)


def _change_state(email: OutboundEmail, state: str, reason: str) -> bool:
    """Sent → ``state``, with the reason: only from sent, so that a report
    that comes again, or a second one, changes nothing."""
    changed = OutboundEmail.objects.filter(pk=email.pk, state=OutboundEmail.State.SENT).update(
        state=state, last_error=reason
    )
    return changed == 1


def _record_on_request(
    email: OutboundEmail, text: str, *, mark: bool = False, kind: str = RequestEvent.Kind.EMAIL_BOUNCED
) -> None:
    """The report on the request's timeline; with ``mark``, the request's
    mark too, if the address is still the one on file (open or ended
    alike; never for a request whose personal data was erased)."""
    reset = email.reset
    if reset is None:
        return
    if mark:
        on_file = ResetRequest.objects.filter(pk=reset.pk, email=email.to, personal_data_purged_at__isnull=True)
        on_file.filter(email_undeliverable=False).update(
            email_undeliverable=True, email_undeliverable_at=timezone.now()
        )
        if on_file.exists():
            text = f"{text} {CALL_THE_PATIENT}"
        elif reset.personal_data_purged_at is None:
            text = f"{text} The address on file has been changed since."
    RequestEvent.objects.record(reset, kind, message=text)
