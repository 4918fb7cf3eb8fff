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


# A path-like run of characters, then its query string: "/a/b?x=1", also
# inside a URL ("https://host/a?x=1") or a quoted request line.
_QUERY_STRING = re.compile(r"(/[^\s?#\"']*)\?[^\s\"']*")


def strip_query_strings(text: str) -> str:
    """``text`` with the query string of every path in it removed: an
    admin search's ``?q=<patient email>`` must not reach a log."""
    return _QUERY_STRING.sub(r"\1", text)


class QueryStringFilter(logging.Filter):
    """For Django's log handler: the development server logs every 4xx and
    5xx request line (``"GET /admin/…/?q=… HTTP/1.1" 404``), and any message
    may quote a URL. The formatted message loses its query strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        stripped = strip_query_strings(message)
        if stripped != message:
            record.msg, record.args = stripped, ()
        return True
