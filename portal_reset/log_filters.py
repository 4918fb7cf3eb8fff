"""Log filters: request ids in every line, status-link secrets masked.

Logs carry a request id and, where there is one, a reference — never names,
emails, dates of birth, phones or free text.
"""

from __future__ import annotations

import logging
import re

from .middleware import current_request_id

_STATUS_TOKEN = re.compile(r"(/status/)[^\s'\"]*", re.IGNORECASE)


class MaskStatusTokenFilter(logging.Filter):
    """Status links carry a secret, and Django's request log names the path
    (in the message and in the ``request`` it attaches): mask both."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/status/" in message.lower():
            record.msg, record.args = _STATUS_TOKEN.sub(r"\1…/", message), ()
        record.__dict__.pop("request", None)
        return True


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True
