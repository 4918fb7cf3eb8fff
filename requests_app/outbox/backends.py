"""The local-run email backend: each message is one .eml file under var/mail/."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage


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
            tmp.write_bytes(message.message().as_bytes(linesep="\r\n"))
            tmp.rename(path)  # a reader never sees half a message
        return len(email_messages)
