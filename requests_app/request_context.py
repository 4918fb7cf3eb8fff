"""Request ids and client addresses: what logs and rate limits key on.

Logs carry a request id and, where there is one, a reference — never names,
emails, dates of birth, phones or free text.
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def client_ip(request: HttpRequest) -> str:
    """The client's address: the socket's, or — behind a TLS proxy — the
    one the proxy wrote into CLIENT_IP_HEADER. Of a list (X-Forwarded-For)
    the right-most entry is taken: the one our proxy appended, which the
    client cannot forge. Anything that is not an IP address falls back to
    the socket's."""
    remote = request.META.get("REMOTE_ADDR", "") or "0.0.0.0"  # noqa: S104
    header = settings.CLIENT_IP_HEADER
    if header:
        meta_key = "HTTP_" + header.upper().replace("-", "_")
        forwarded = request.META.get(meta_key, "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return remote


def axes_client_ip(request: HttpRequest) -> str:
    return client_ip(request)


class RequestIdMiddleware:
    """Tag every log line of a request with an id, and return it in a header
    so staff can quote it when something goes wrong."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _INCOMING_ID.match(incoming) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


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
        record.request_id = _request_id.get()
        return True
