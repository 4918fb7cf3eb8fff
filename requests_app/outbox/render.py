"""Outbox emails rendered from templates/emails/<kind>_{subject.txt,body.txt,body.html}.

Patient emails carry the reference, what happens next, the expected response
time, the status link, the spam-folder reminder and the practice's contact
(its phone, a tap-to-call link in HTML) — never the date of birth, phone,
details or staff notes. Links are built from SITE_URL, never from a
request's Host header. Every email comes from DEFAULT_FROM_EMAIL with the
practice's name as its display name.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.policy import Compat32
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from ..models import HeldSubmission, OutboundEmail
from ..phones import phone_display, phone_href
from ..selectors import resets_overdue
from ..working_hours import due_after

# The digest lists the most overdue requests; its count covers them all.
DIGEST_MAX_LISTED = 200


def site_url(path: str) -> str:
    return settings.SITE_URL + path


def practice_context() -> dict[str, Any]:
    return {
        "practice_name": settings.PRACTICE_NAME,
        "practice_contact_email": settings.PRACTICE_CONTACT_EMAIL,
        # The number staff call from and patients call back: written as
        # practice_phone; practice_phone_e164|tel_link (templatetags/
        # patient_pages.py) makes it a tap-to-call link.
        "practice_phone": phone_display(settings.PRACTICE_PHONE),
        "practice_phone_e164": settings.PRACTICE_PHONE,
        "practice_phone_href": phone_href(settings.PRACTICE_PHONE),
        "portal_name": settings.PORTAL_NAME,
        "portal_login_url": settings.PORTAL_LOGIN_URL,
        "portal_help_url": settings.PORTAL_HELP_URL,
        "sla_hours": settings.RESET_SLA_HOURS,
        "access_link_hours": settings.ACCESS_LINK_HOURS,
        "practice_time_zone": settings.PRACTICE_TIME_ZONE,
    }


def email_context(outbound: OutboundEmail) -> dict[str, Any]:
    context = practice_context()
    reset = outbound.reset
    if reset is not None:
        context.update(
            {
                "reference": reset.reference,
                "first_name": reset.first_name,
                "status_url": site_url(reset.get_status_url()),
                "admin_url": site_url(reverse("admin:requests_app_resetrequest_change", args=[reset.pk])),
                "reason": reset.get_reason_display(),
                "outcome": reset.outcome,
                "close_reason": reset.close_reason,
            }
        )
        if outbound.kind in (OutboundEmail.Kind.ACKNOWLEDGMENT, OutboundEmail.Kind.REOPENED):
            # What these emails promise: RESET_SLA_HOURS of working time
            # from when the email is written (the due clock starts then).
            context["reply_by"] = due_after()
        elif outbound.kind == OutboundEmail.Kind.MESSAGE:
            context["message_text"] = message_as_sent(outbound)
        elif outbound.kind == OutboundEmail.Kind.STAFF_NEW_REQUEST:
            context["due_at"] = reset.due_at  # the staff notice's "Due by", in working hours
    elif outbound.kind == OutboundEmail.Kind.STAFF_OVERDUE_DIGEST:
        overdue_requests = resets_overdue()
        overdue = [
            {
                "reference": r.reference,
                "status": r.get_status_display(),
                "due_at": r.due_at,
                "admin_url": site_url(reverse("admin:requests_app_resetrequest_change", args=[r.pk])),
            }
            for r in overdue_requests.only("pk", "reference", "status", "due_at")[:DIGEST_MAX_LISTED]
        ]
        context.update(
            {
                "overdue": overdue,
                "count": overdue_requests.count(),
                "held_count": HeldSubmission.objects.count(),
                "held_url": site_url(reverse("admin:requests_app_heldsubmission_changelist")),
            }
        )
    return context


def message_as_sent(outbound: OutboundEmail) -> str:
    """A message email's text: the one stored when it was sent, never the
    template's current text. A row without its message fails to render
    (a permanent failure of that email) rather than send the patient an
    empty message."""
    if outbound.patient_message is None:
        raise ValueError(f"Email #{outbound.pk} is a message to the patient without its message.")
    return outbound.patient_message.body


def render(kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, plain text, HTML) for one kind of email."""
    # One line, whatever the template did.
    subject = " ".join(render_to_string(f"emails/{kind}_subject.txt", context).split())
    text = render_to_string(f"emails/{kind}_body.txt", context)
    html = render_to_string(f"emails/{kind}_body.html", context)
    return subject, text, html


def email_language(outbound: OutboundEmail) -> str:
    """The patient's language for their own emails; English for staff."""
    if outbound.is_for_patient and outbound.reset is not None:
        return outbound.reset.language
    return "en"


def from_header() -> str:
    """DEFAULT_FROM_EMAIL with the practice's name as its display name
    (``IFM <resets@…>``): a bare address looks like spam. One that already
    has a display name is kept as it is. The SMTP envelope sender stays the
    bare address (smtplib takes the address out of this)."""
    name, address = parseaddr(settings.DEFAULT_FROM_EMAIL)
    if name or not address:
        return str(settings.DEFAULT_FROM_EMAIL)
    # Address quotes the name where it must; Django encodes it if it is not ASCII.
    return str(Address(display_name=settings.PRACTICE_NAME, addr_spec=address))


class _Compat32FastHeaders(Compat32):
    """compat32, the policy Django's messages are written with, minus its
    cost where it changes nothing: a header that is ASCII, one line and
    short enough not to fold is written as it is, instead of through
    email.header.Header (which gives the same bytes, at a third of the
    cost of writing the message out). Anything else goes the usual way."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + len(value) + 2 <= FAST_HEADER_MAX
            and "\r" not in value
            and "\n" not in value
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


# Shorter than compat32's 78-character fold: no header near it takes the shortcut.
FAST_HEADER_MAX = 76
_FAST_HEADERS = _Compat32FastHeaders()


class OutboxMessage(EmailMultiAlternatives):
    """An outbox email as Django builds it, written out with
    _Compat32FastHeaders (the same bytes, sooner)."""

    def message(self) -> Any:
        message = super().message()
        message.policy = _FAST_HEADERS
        return message


def build_message(outbound: OutboundEmail) -> EmailMultiAlternatives:
    # The worker has no request to take a language from: each email says
    # which one it is written in.
    language = email_language(outbound)
    with translation.override(language):
        subject, text, html = render(outbound.kind, email_context(outbound))
    message = OutboxMessage(
        subject=subject,
        body=text,
        from_email=from_header(),
        to=[outbound.to],
        headers={"Message-ID": outbound.message_id, "Content-Language": language},
        # A patient's reply reaches the front desk, not an unread mailbox.
        reply_to=[settings.PRACTICE_CONTACT_EMAIL] if outbound.is_for_patient else None,
    )
    message.attach_alternative(html, "text/html")
    return message
