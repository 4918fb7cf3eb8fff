"""The outbox's own email writer (render.OutboxMessage.message_bytes) and SMTP
backend (backends.OutboxSMTPBackend): what leaves is, byte for byte, what
Django's EmailMultiAlternatives and SMTP backend would have sent."""

from __future__ import annotations

import email
import email.policy
import random
import smtplib
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import sanitize_address

from requests_app.models import OutboundEmail
from requests_app.outbox import backends
from requests_app.outbox.render import OutboxMessage, build_message
from requests_app.outbox.send import outbox_connection

from .factories import OutboundEmailFactory, outbound_email_of_kind

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.support.smtp"]

NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)

PRACTICE_NAMES = [
    "IFM",
    "Clínica Peña",
    "Smith, Jones & Ruiz",
    "Clínica Familiar de Medicina Integral del Valle Norte y Sur, Sociedad Cooperativa",
]


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    # The Date header is written from the clock: both writers read the same time.
    time_machine.move_to(NOW, tick=False)


def both_ways(message: EmailMultiAlternatives, linesep: str = "\r\n") -> tuple[bytes, bytes]:
    """(Django's bytes, ours) for the same draw of the random boundary."""
    assert isinstance(message, OutboxMessage)
    random.seed(20260615)
    theirs = message.message().as_bytes(linesep=linesep)
    random.seed(20260615)
    ours = message.message_bytes(linesep)
    return theirs, ours


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def outbox_message(**overrides: object) -> OutboxMessage:
    values: dict[str, object] = {
        "subject": "IFM: we received your portal access request (3C2N-WZC5)",
        "body": "Dear Pat,\n\nYour reference number: 3C2N-WZC5\n",
        "from_email": "IFM <portal-reset@practice.example>",
        "to": ["pat@example.com"],
        "headers": {"Message-ID": "<outbox-1.1@practice.example>", "Content-Language": "en"},
        "reply_to": ["frontdesk@practice.example"],
    }
    html = str(overrides.pop("html", "<p>Dear Pat,</p>\n"))
    values.update(overrides)
    message = OutboxMessage(**values)  # type: ignore[arg-type]
    message.attach_alternative(html, "text/html")
    return message


@pytest.mark.parametrize("practice_name", PRACTICE_NAMES)
@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("kind", [kind for kind, _ in OutboundEmail.Kind.choices])
def test_it_writes_every_email_as_django_does(settings, kind, language, practice_name):
    settings.PRACTICE_NAME = practice_name
    message = build_message(outbound_email_of_kind(kind, language=language))

    for linesep in ("\r\n", "\n"):
        theirs, ours = both_ways(message, linesep)
        assert ours == theirs
    # The writer's own way, not Django's, wrote it.
    assert message._lean_shape()


def test_it_writes_spanish_text_and_a_name_that_is_not_ascii_as_a_mail_client_reads_django_s(settings):
    settings.PRACTICE_NAME = "Clínica Peña"
    message = outbox_message(
        subject="Clínica Peña: recibimos su solicitud (3C2N-WZC5)",
        body="Estimada María José:\n\nRecibimos su solicitud. “Ya puedo entrar”.\n",
        html="<p>Estimada María José:</p>\n<p>Recibimos su solicitud.</p>\n",
        from_email="Clínica Peña <portal-reset@practice.example>",
        headers={"Message-ID": "<outbox-7.1@practice.example>", "Content-Language": "es"},
    )

    theirs, ours = both_ways(message, "\n")

    assert ours == theirs
    read = parsed(ours)
    # Django folds an encoded subject onto a line of its own: it reads back
    # with the fold's space in front (tests/test_i18n.py reads it so too).
    assert str(read["Subject"]).strip() == "Clínica Peña: recibimos su solicitud (3C2N-WZC5)"
    [sender] = read["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Clínica Peña", "portal-reset@practice.example")
    assert str(read["Reply-To"]) == "frontdesk@practice.example"
    assert (read["Message-ID"], read["Content-Language"]) == ("<outbox-7.1@practice.example>", "es")
    assert read.get_body(preferencelist=("plain",)).get_content() == (
        "Estimada María José:\n\nRecibimos su solicitud. “Ya puedo entrar”.\n"
    )
    assert "Recibimos su solicitud." in read.get_body(preferencelist=("html",)).get_content()
    assert [part["Content-Transfer-Encoding"] for part in read.iter_parts()] == ["8bit", "8bit"]


def test_it_writes_ascii_parts_as_7bit_like_django():
    theirs, ours = both_ways(outbox_message(body="Plain\r\nold\rtext\n", html="<p>ascii</p>"))

    assert ours == theirs
    assert [part["Content-Transfer-Encoding"] for part in parsed(ours).iter_parts()] == ["7bit", "7bit"]


@pytest.mark.parametrize(
    "subject",
    [
        "A very long subject line that will have to be folded by the header writer " * 3,
        "Clínica Peña: recibimos su solicitud de acceso al portal (3C2N-WZC5), señora Núñez",
    ],
)
def test_it_folds_a_long_subject_as_django_does(subject):
    theirs, ours = both_ways(outbox_message(subject=subject))

    assert ours == theirs
    assert b"\r\n " in ours.split(b"\r\n\r\n", 1)[0].split(b"Subject:", 1)[1]  # folded, not one long line


def test_it_leaves_a_message_with_a_line_too_long_for_smtp_to_django_s_quoted_printable():
    long_line = "Ñ" + "x" * 1200
    message = outbox_message(body=f"Dear Pat,\n{long_line}\n")

    theirs, ours = both_ways(message)

    assert not message._lean_shape()
    assert ours == theirs
    text = parsed(ours).get_body(preferencelist=("plain",))
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert long_line in text.get_content()


def test_it_picks_another_boundary_when_the_text_has_the_one_drawn():
    random.seed(7)
    drawn = "=" * 15 + f"{random.randrange(2**63 - 1):019d}" + "=="
    message = outbox_message(body=f"Look:\n--{drawn}\nthere\n")

    # The same draw again: it is in the text. (With CRLF line ends the
    # email package's check misses it — its regex's $ stops short of the
    # \r — and so, the same bytes, does ours.)
    random.seed(7)
    ours = message.message_bytes("\n")
    random.seed(7)
    theirs = message.message().as_bytes(linesep="\n")

    assert ours == theirs
    assert f'boundary="{drawn}.0"'.encode() in ours


@pytest.mark.parametrize(
    "change",
    [
        {"cc": ["other@example.com"]},
        {"headers": {"Content-Language": "en"}},  # no Message-ID of its own: Django makes one up
        {"body": ""},
    ],
)
def test_it_leaves_any_other_shape_to_django(change):
    message = outbox_message(**change)

    assert not message._lean_shape()
    theirs, ours = both_ways(message)
    if "Message-ID" in message.extra_headers:
        assert ours == theirs
    else:  # a made-up Message-ID each time: the rest is the same
        assert ours.split(b"Message-ID:")[0] == theirs.split(b"Message-ID:")[0]


def test_it_refuses_a_header_with_a_line_break_as_django_does():
    from django.core.mail import BadHeaderError

    message = outbox_message(subject="Hello\r\nBcc: everyone@example.com")

    with pytest.raises(BadHeaderError):
        message.message_bytes("\r\n")


# --- The SMTP backend -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "pat@example.com",
        "maria.lopez+portal@mail.example.org",
        "a_b-c@xn--exmple-cua.com",
        "x@a-b.c-d.example",
        "1.2.3@example.co.uk",
    ],
)
def test_a_plain_address_goes_on_the_envelope_as_sanitize_address_writes_it(address):
    assert backends.envelope_address(address, "utf-8") == sanitize_address(address, "utf-8") == address


@pytest.mark.parametrize(
    "address",
    [
        "Pat <pat@example.com>",
        "Pat.Smith@Example.com",
        '"pat smith"@example.com',
        "josé@example.com",
        "pat@exämple.com",
        ("Pat", "pat@example.com"),
    ],
)
def test_any_other_address_is_sanitized_as_django_does(address):
    assert backends.envelope_address(address, "utf-8") == sanitize_address(address, "utf-8")


class _Recorded:
    """An SMTP client of ``cls`` that records its commands instead of sending them."""

    def __init__(self, cls: type[smtplib.SMTP], esmtp: bool = True):
        self.client = cls()  # not connected
        self.client.does_esmtp = esmtp
        self.client.esmtp_features = {"smtputf8": ""}
        self.commands: list[tuple[str, str]] = []
        self.client.putcmd = lambda cmd, args="": self.commands.append((cmd, args))  # type: ignore[method-assign]
        self.client.getreply = lambda: (250, b"OK")  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("sender", "recipient", "options"),
    [
        ("portal-reset@practice.example", "pat@example.com", ()),
        ("IFM <portal-reset@practice.example>", "maria.lopez+portal@mail.example.org", ("size=1234",)),
        ('"Clínica Peña" <portal-reset@practice.example>', "Pat <pat@example.com>", ("size=1", "BODY=8BITMIME")),
        ("portal-reset@practice.example", '"pat smith"@example.com', ()),
        ("portal-reset@practice.example", "josé@example.com", ("SMTPUTF8",)),
        ("<portal-reset@practice.example>", "a_b-c@xn--exmple-cua.com", ()),
    ],
)
@pytest.mark.parametrize("esmtp", [True, False])
def test_the_envelope_commands_are_smtplib_s(sender, recipient, options, esmtp):
    ours, smtplib_s = _Recorded(backends.EnvelopeSMTP, esmtp), _Recorded(smtplib.SMTP, esmtp)
    for recorded in (ours, smtplib_s):
        assert recorded.client.mail(sender, options) == (250, b"OK")
        assert recorded.client.rcpt(recipient, options) == (250, b"OK")
        assert recorded.client.mail(sender, options) == (250, b"OK")  # the sender kept from the first

    assert ours.commands == smtplib_s.commands
    assert ours.client.command_encoding == smtplib_s.client.command_encoding


def test_the_outbox_connects_with_its_envelope_commands(settings):
    settings.EMAIL_BACKEND = backends.DJANGO_SMTP_BACKEND
    assert outbox_connection().connection_class is backends.EnvelopeSMTP
    settings.EMAIL_USE_SSL = True
    assert outbox_connection().connection_class is backends.EnvelopeSMTPSSL


def test_the_outbox_sends_with_its_own_smtp_backend_where_django_s_is_configured(settings):
    settings.EMAIL_BACKEND = backends.DJANGO_SMTP_BACKEND
    assert type(outbox_connection()) is backends.OutboxSMTPBackend

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert type(outbox_connection()) is type(get_connection())


def test_the_smtp_backend_sends_the_bytes_and_envelope_django_s_would(real_smtp, settings):
    settings.PRACTICE_NAME = "Clínica Peña"
    message = build_message(OutboundEmailFactory(to="p@example.com"))

    random.seed(1)
    with get_connection(backends.DJANGO_SMTP_BACKEND) as django_connection:
        django_connection.send_messages([message])
    random.seed(1)
    with outbox_connection() as ours:
        assert ours.send_messages([message, message]) == 2

    [by_django, by_us, again] = real_smtp.wait_for_messages("p@example.com", 3)
    assert by_us.raw == by_django.raw
    assert (by_us.mail_from, by_us.rcpt_tos) == (by_django.mail_from, by_django.rcpt_tos)
    assert by_us.mail_from == settings.DEFAULT_FROM_EMAIL  # the bare address, as Django's
    assert again.mail_from == settings.DEFAULT_FROM_EMAIL


# --- Marking sent ---------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_sent_event_names_each_kind_as_its_label_does(language):
    # OutboundEmail.get_kind_display replaces Django's (which builds a dict
    # of the choices on every call): the same text for every kind, and for
    # a value that is none.
    from django.db.models import Model
    from django.utils import translation

    field = OutboundEmail._meta.get_field("kind")
    with translation.override(language):
        for kind in [*(kind for kind, _ in OutboundEmail.Kind.choices), "not-a-kind"]:
            email = OutboundEmail(kind=kind)
            assert email.get_kind_display() == Model._get_FIELD_display(email, field)  # type: ignore[attr-defined]
