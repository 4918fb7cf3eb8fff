"""The outbox's email backends: the local run's (each message one .eml file
under var/mail/), and Django's SMTP backend minus the work it repeats for
every message of a batch."""

from __future__ import annotations

import datetime
import functools
import secrets
import smtplib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.core.mail.message import EmailMessage, sanitize_address

from ..email_addresses import is_plain

# Django's SMTP backend, and ours in its place (outbox/send.py asks for it).
DJANGO_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
OUTBOX_SMTP_BACKEND = "requests_app.outbox.backends.OutboxSMTPBackend"


class EmlFileBackend(BaseEmailBackend):
    """Unlike Django's file backend (one log file per process), this writes
    one file per message that any mail client opens."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        folder = Path(settings.EMAIL_FILE_PATH)
        folder.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
            path = folder / f"{stamp}-{secrets.token_hex(4)}.eml"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(message_bytes(message))
            tmp.rename(path)  # a reader never sees half a message
        return len(email_messages)


def message_bytes(message: EmailMessage) -> bytes:
    """What goes on the wire: the outbox message's own writer
    (render.OutboxMessage.message_bytes, the same bytes as Django's) or
    Django's."""
    write = getattr(message, "message_bytes", None)
    if write is not None:
        return bytes(write("\r\n"))
    return bytes(message.message().as_bytes(linesep="\r\n"))


def envelope_address(address: Any, encoding: str) -> str:
    """sanitize_address(address, encoding), without running Python's header
    parser on an address it would give back unchanged."""
    if isinstance(address, str) and is_plain(address):
        return address
    return str(sanitize_address(address, encoding))


class EnvelopeSMTP(smtplib.SMTP):
    """smtplib's MAIL FROM and RCPT TO, the same commands, without parsing
    the same sender again for every message, nor a plain recipient at all
    (smtplib's quoteaddr runs email.utils.parseaddr on both, every time,
    and gives ``<address>`` for a plain one). SMTPUTF8 goes smtplib's way."""

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        if any(option.lower() == "smtputf8" for option in options):
            return super().mail(sender, options)
        self.putcmd("mail", f"FROM:{_quoted_sender(sender)}{self._options(options)}")
        return self.getreply()

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        if not is_plain(recip):
            return super().rcpt(recip, options)
        self.putcmd("rcpt", f"TO:<{recip}>{self._options(options)}")
        return self.getreply()

    def _options(self, options: Sequence[str]) -> str:
        return " " + " ".join(options) if options and self.does_esmtp else ""


@functools.lru_cache(maxsize=16)
def _quoted_sender(sender: str) -> str:
    # The outbox's sender is one setting: parsed once.
    return smtplib.quoteaddr(sender)


class EnvelopeSMTPSSL(EnvelopeSMTP, smtplib.SMTP_SSL):
    pass


class OutboxSMTPBackend(DjangoSMTPBackend):
    """Django's SMTP backend (its connection, TLS, login, time-out and
    errors) sending each message as Django's does, with four costs of a
    batch taken out: the sender is sanitized once per connection instead of
    once per message, a plain recipient is not parsed (envelope_address),
    nor the envelope parsed again for its commands (EnvelopeSMTP),
    and an outbox message is written by its own writer (message_bytes). It
    counts the messages sent on its connection (messages_sent), which a
    worker keeps from one batch to the next (kept_connection.py)."""

    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        return EnvelopeSMTPSSL if self.use_ssl else EnvelopeSMTP

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._senders: dict[tuple[Any, str], str] = {}
        self.messages_sent = 0  # on the current connection, tried or not

    def open(self) -> bool | None:
        opened = super().open()
        if opened:
            self.messages_sent = 0
        return opened

    def _send(self, email_message: EmailMessage) -> bool:
        recipients = email_message.recipients()
        if not recipients:
            return False
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        key = (email_message.from_email, encoding)
        from_email = self._senders.get(key)
        if from_email is None:
            from_email = self._senders[key] = str(sanitize_address(email_message.from_email, encoding))
        envelope = [envelope_address(address, encoding) for address in recipients]
        data = message_bytes(email_message)
        assert self.connection is not None  # send_messages opened it
        self.messages_sent += 1
        try:
            self.connection.sendmail(from_email, envelope, data)
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
            return False
        return True
