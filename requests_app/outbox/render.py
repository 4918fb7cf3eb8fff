"""Outbox emails rendered from templates/emails/<kind>_{subject.txt,body.txt,body.html}.

Patient emails carry the reference, what happens next, the expected response
time, the status link, the spam-folder reminder and the practice's contact
(its phone, a tap-to-call link in HTML) — never the date of birth, phone,
details or staff notes. Links are built from SITE_URL, never from a
request's Host header. Every email comes from DEFAULT_FROM_EMAIL with the
practice's name as its display name.
"""

from __future__ import annotations

import functools
import random
import re
import sys
from datetime import datetime
from email.headerregistry import Address
from email.policy import Compat32
from email.utils import formatdate, parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import RFC5322_EMAIL_LINE_LENGTH_LIMIT, forbid_multi_line_headers
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import pgettext

from ..models import HeldSubmission, OutboundEmail
from ..phones import phone_display, phone_href
from ..practice_time import practice_zone
from ..selectors import resets_overdue
from ..templatetags.email_fragments import FRAGMENTS, Kept, date_to_the_minute
from ..working_hours import due_after
from . import filled_in

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
                "outcome": reset.outcome,
                "close_reason": reset.close_reason,
            }
        )
        if not outbound.is_for_patient:
            # Only staff emails name the reason and link to the admin: for a
            # patient's, each would cost a twentieth of a millisecond for nothing.
            context["reason"] = reset.get_reason_display()
            context["admin_url"] = site_url(reverse("admin:requests_app_resetrequest_change", args=[reset.pk]))
        if outbound.kind in (OutboundEmail.Kind.ACKNOWLEDGMENT, OutboundEmail.Kind.REOPENED):
            # What these emails promise: RESET_SLA_HOURS of working time
            # from when the email is written (the due clock starts then).
            context["reply_by_text"] = reply_by_text(due_after())
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


def reply_by_text(reply_by: datetime) -> str:
    """When the patient can expect their access reset, as their email writes
    it: on the practice's clock, in the active language, to the minute. The
    same text for every email of a minute, so the sentence it goes in is a
    {% fixed %} stretch (email_fragments.py) like the practice's own."""
    reply_by_format = pgettext(
        "Date format: when the patient can expect their access reset, e.g. Tuesday, March 17, 1:00 PM",
        "l, F j, g:i A",
    )
    return date_to_the_minute(timezone.localtime(reply_by, practice_zone()), reply_by_format)


# The values of an email's context that are the same for every email of a
# minute: {% fixed %} may read them, as it reads the practice's settings.
SAME_FOR_A_MINUTE = frozenset({"reply_by_text"})


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
    return _from_header(str(settings.DEFAULT_FROM_EMAIL), str(settings.PRACTICE_NAME))


@functools.lru_cache(maxsize=16)
def _from_header(from_email: str, practice_name: str) -> str:
    # The same two settings for every email: parsed once, not per email.
    name, address = parseaddr(from_email)
    if name or not address:
        return from_email
    # Address quotes the name where it must; Django encodes it if it is not ASCII.
    return str(Address(display_name=practice_name, addr_spec=address))


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
    _Compat32FastHeaders (the same bytes, sooner); or, by message_bytes,
    written straight to bytes without building the MIME tree at all."""

    def message(self) -> Any:
        message = super().message()
        message.policy = _FAST_HEADERS
        return message

    def message_bytes(self, linesep: str = "\n") -> bytes:
        """The bytes ``self.message().as_bytes(linesep=linesep)`` gives — the
        same headers, in the same order, folded and encoded the same way,
        the same parts, the same random boundary for the same state of
        ``random`` — written directly for the one shape every outbox email
        has: plain text and one HTML alternative, UTF-8, each line of each
        part short enough to go as it is (7bit or 8bit), no Cc, no
        attachments. Building and writing Django's MIME tree costs about
        a tenth of a millisecond per part in ``set_param`` and the
        generator's per-message boundary regex; here it is a few string
        joins. Any other shape goes Django's way."""
        if not self._lean_shape():
            return bytes(self.message().as_bytes(linesep=linesep))
        body, html = str(self.body), str(self.alternatives[0][0])  # both str (_lean_shape)
        try:
            parts = [_text_part("plain", body, linesep), _text_part("html", html, linesep)]
        except UnicodeEncodeError:
            # A lone surrogate: Django's way says what is wrong with it.
            return bytes(self.message().as_bytes(linesep=linesep))
        nl = linesep.encode("ascii")
        boundary = _make_boundary(nl.join(parts))
        # compat32 folds this one at the "; ", always the same way.
        top = f'Content-Type: multipart/alternative;{linesep} boundary="{boundary}"{linesep}MIME-Version: 1.0{linesep}'
        headers = [top.encode("ascii")]
        header_names = {name.lower() for name in self.extra_headers}
        values: list[tuple[str, Any]] = [("Subject", self.subject), ("From", self.from_email)]
        if self.to:
            values.append(("To", ", ".join(str(v) for v in self.to)))
        if self.reply_to:
            values.append(("Reply-To", ", ".join(str(v) for v in self.reply_to)))
        if "date" not in header_names:
            values.append(("Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME)))
        # No Message-ID of Django's: every outbox email has its own (_lean_shape).
        values += list(self.extra_headers.items())
        policy = _fast_headers(linesep)
        for name, value in values:
            if not _plain_subject(name, value):
                name, value = forbid_multi_line_headers(name, value, "utf-8")
            headers.append(policy.fold_binary(name, value))
        dash = b"--" + boundary.encode("ascii")
        return b"".join(
            [
                *headers,
                nl,
                dash,
                nl,
                parts[0],
                nl,
                dash,
                nl,
                parts[1],
                nl,
                dash,
                b"--",
                nl,
            ]
        )

    def _lean_shape(self) -> bool:
        """Whether message_bytes may write this message itself."""
        if self.encoding not in (None, "utf-8") or (self.encoding or settings.DEFAULT_CHARSET) != "utf-8":
            return False
        if self.content_subtype != "plain" or self.alternative_subtype != "alternative":
            return False
        if self.attachments or self.cc or not isinstance(self.body, str) or not self.body:
            return False
        if len(self.alternatives) != 1:
            return False
        content, mimetype = self.alternatives[0]
        if mimetype != "text/html" or not isinstance(content, str):
            return False
        names = {name.lower() for name in self.extra_headers}
        # Django makes up a Message-ID when none is given; the rest are
        # headers Django writes from its own attributes or would write twice.
        if "message-id" not in names or names & _HEADERS_NOT_TAKEN:
            return False
        return not _has_long_lines(self.body) and not _has_long_lines(content)


def _plain_subject(name: str, value: Any) -> bool:
    """A subject forbid_multi_line_headers gives back as it is: ASCII, one
    line, nothing email.header.Header would fold or encode (it would run
    it through Header, the cost of the rest of the header block)."""
    return (
        name == "Subject"
        and isinstance(value, str)
        and value.isascii()
        and len(value) <= _PLAIN_SUBJECT_MAX
        and value.isprintable()
        and "=?" not in value
        and value == " ".join(value.split())
    )


# Header(value).encode() folds at 76 characters; well under, it cannot.
_PLAIN_SUBJECT_MAX = 70


_HEADERS_NOT_TAKEN = frozenset(
    {"from", "to", "cc", "reply-to", "subject", "mime-version", "content-type", "content-transfer-encoding"}
)


def _has_long_lines(text: str) -> bool:
    """Django's test for quoted-printable (SafeMIMEText.set_payload): a line
    (str.splitlines) over 998 bytes. Taken piece by piece between "\n"s:
    a piece of at most 249 characters (4 bytes at most each), or of at most
    998 bytes, holds no such line."""
    limit = RFC5322_EMAIL_LINE_LENGTH_LIMIT
    return any(
        len(piece) > limit // 4
        and len(piece.encode(errors="surrogateescape")) > limit
        and any(len(line.encode(errors="surrogateescape")) > limit for line in piece.splitlines())
        for piece in text.split("\n")
    )


# What the email package's generator takes for a line break in a body.
_NEWLINES = re.compile(r"\r\n|\r|\n")


def _text_part(subtype: str, text: str, linesep: str) -> bytes:
    """One text part as Django's SafeMIMEText writes it with UTF-8 and no
    long lines: 7bit if ASCII, otherwise 8bit, each line break ``linesep``."""
    cte = "7bit" if text.isascii() else "8bit"
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{linesep}MIME-Version: 1.0{linesep}'
        f"Content-Transfer-Encoding: {cte}{linesep}{linesep}{_with_line_ends(text, linesep)}"
    ).encode()


def _with_line_ends(text: str, linesep: str) -> str:
    """Every line break of ``text`` (CRLF, CR or LF) as ``linesep``."""
    if "\r" not in text:
        return text.replace("\n", linesep)  # the same, at a fifth of the cost
    return _NEWLINES.sub(linesep, text)


def _make_boundary(text: bytes) -> str:
    """email.generator's boundary for a multipart whose parts are ``text``:
    the same draw from ``random``, and the same way out if the text has it."""
    boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
    if boundary.encode("ascii") not in text:
        return boundary
    b, counter = boundary, 0
    while re.search(b"^--" + re.escape(b.encode("ascii")) + b"(--)?$", text, re.MULTILINE):
        b = f"{boundary}.{counter}"
        counter += 1
    return b


@functools.cache
def _fast_headers(linesep: str) -> _Compat32FastHeaders:
    return _FAST_HEADERS.clone(linesep=linesep)


def _render_kept(kind: str, context: dict[str, Any], kept: dict[Any, Any]) -> tuple[str, str, str]:
    """render(), with ``kept`` (the email's language's store): the {% fixed %}
    stretches from it, and a patient email that qualifies (filled_in.py)
    from its kind's kept rendering, with its own values filled in."""
    found = filled_in.key_and_marked(kind, context, shared_names())
    if found is not None:
        key, marked = found
        if key not in kept:
            cut = [filled_in.pieces(part) for part in render(kind, {**marked, FRAGMENTS: kept})]
            # None: it could not be cut (a setting holds a mark's characters).
            kept[key] = None if None in cut else cut
        if kept[key] is not None:
            subject, text, html = (filled_in.filled(part, context) for part in kept[key])
            return " ".join(subject.split()), text, html
    return render(kind, {**context, FRAGMENTS: kept})


@functools.cache
def shared_names() -> frozenset[str]:
    """The names of an email's context that many emails share, the same
    for every email of a language in a minute: the practice's settings and
    SAME_FOR_A_MINUTE. What a {% fixed %} stretch may read, and what a
    patient email's kept rendering is keyed on (filled_in.py)."""
    return frozenset(practice_context()) | SAME_FOR_A_MINUTE


def build_message(outbound: OutboundEmail, fragments: Kept | None = None) -> EmailMultiAlternatives:
    """The email for one outbox row. ``fragments``: the process's store of
    the templates' {% fixed %} stretches, a store per language
    (email_fragments.kept_fragments), where each stretch (the same for every
    email in a language) is rendered once."""
    # The worker has no request to take a language from: each email says
    # which one it is written in.
    language = email_language(outbound)
    with translation.override(language):
        context = email_context(outbound)  # in the email's language too (the reason's label)
        if fragments is None:
            subject, text, html = render(outbound.kind, context)
        else:
            subject, text, html = _render_kept(outbound.kind, context, fragments.setdefault(language, {}))
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
