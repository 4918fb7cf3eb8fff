"""An email as it leaves, read back: parsed from its bytes, so encoded
headers and quoted-printable bodies read as plain text."""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from collections.abc import Iterable
from typing import Any


def sent(message: Any) -> email.message.EmailMessage:
    return email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)


def text_part(message: Any) -> str:
    return str(sent(message).get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]


def html_part(message: Any) -> str:
    return str(sent(message).get_body(preferencelist=("html",)).get_content())  # type: ignore[union-attr]


def everything(message: Any, *, leave_out: Iterable[str] = ("content-type",)) -> str:
    """Headers (but those named in ``leave_out``) and every part's decoded
    content, with the status link's secret taken out: it could spell anything."""
    parsed = sent(message)
    left_out = {name.lower() for name in leave_out}
    chunks = [f"{name}: {value}" for name, value in parsed.items() if name.lower() not in left_out]
    chunks += [part.get_content() for part in parsed.walk() if not part.is_multipart()]
    return re.sub(r"/status/[^/\s\"'<>]+/", "/status/TOKEN/", "\n".join(chunks))
