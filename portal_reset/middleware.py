"""The middleware at the top of the stack (settings.MIDDLEWARE), each before
anything that would read what it guards:

- ``RequestIdMiddleware``: every log line of an HTTP request carries an id,
  and the response returns it so staff can quote it when something goes
  wrong.
- ``PermissionsPolicyMiddleware``: the Permissions-Policy header on every
  response Django sends, error pages included.
- ``TrustedProxyMiddleware``: the headers only our TLS proxy may set are
  removed from a request that did not come from it.
- ``BodyCharsetMiddleware``: a form body Django cannot decode is answered
  400 before anything reads it.
"""

from __future__ import annotations

import codecs
import contextvars
import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from .client_address import client_ip_header_key, is_trusted_proxy

# The id of the HTTP request being served, for log_filters.RequestIdFilter.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Take the proxy's X-Request-ID if it is a plain token, else make one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _INCOMING_ID.match(incoming) else uuid.uuid4().hex
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


class PermissionsPolicyMiddleware:
    """settings.PERMISSIONS_POLICY on every response: public pages, the
    admin, static files, error pages and the 400 of BodyCharsetMiddleware
    (all of them below it in MIDDLEWARE). Django's SecurityMiddleware has no
    setting for this header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response


class TrustedProxyMiddleware:
    """Remove X-Forwarded-Proto and CLIENT_IP_HEADER from a request whose
    peer (REMOTE_ADDR) is not one of TRUSTED_PROXIES.

    Django's own SECURE_PROXY_SSL_HEADER believes X-Forwarded-Proto from
    anyone who can reach gunicorn. Rather than re-implement is_secure(), the
    header is kept as Django expects it and an untrusted copy is deleted
    here, above SecurityMiddleware: every later reader (the HTTPS redirect,
    HSTS, request.is_secure(), CSRF's Referer check, client_ip() and
    django-axes) then sees the same, already-decided request, and the rule
    lives in one place, portal_reset.client_address.is_trusted_proxy.
    gunicorn's forwarded_allow_ips is the same list (gunicorn.conf.py), so
    its wsgi.url_scheme agrees."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_trusted_proxy(request):
            request.META.pop("HTTP_X_FORWARDED_PROTO", None)
            if key := client_ip_header_key():
                request.META.pop(key, None)
        return self.get_response(request)


# The two content types Django decodes into request.POST. Either is read
# as UTF-8: Django refuses a urlencoded body declared in any other charset
# (with an exception that reaches the error handlers), and would decode a
# multipart one in whatever charset it names.
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# What Django's MultiPartParser accepts as a boundary.
_MULTIPART_BOUNDARY = re.compile(r"[ -~]{0,200}[!-~]")


def _undecodable(request: HttpRequest) -> str | None:
    """Why Django could not decode this request's form body, or None."""
    if request.method != "POST" or request.content_type not in _FORM_TYPES:
        return None
    params = request.content_params or {}
    charset = params.get("charset")
    if charset is not None:
        try:
            name = codecs.lookup(charset).name
        except LookupError:
            return "the form's character encoding is unknown"
        if name != "utf-8":
            return "the form must be sent in UTF-8"
        # utf8, UTF_8, u8 ...: UTF-8 under another name. Django accepts only
        # the exact name, so give it that.
        request.encoding = "utf-8"
    if request.content_type == "multipart/form-data":
        boundary = params.get("boundary", "")
        if not _MULTIPART_BOUNDARY.fullmatch(boundary):
            return "the form has no valid multipart boundary"
    return None


class BodyCharsetMiddleware:
    """A form POST (urlencoded or multipart) is accepted with no charset or
    with UTF-8 under any of its names, and a multipart one only with a valid
    boundary. Anything else is answered 400 with a short plain page, from
    the Content-Type header alone: the body is never read, and nothing
    below (CSRF, the views, the error handlers) sees the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if reason := _undecodable(request):
            return HttpResponseBadRequest(f"Bad request: {reason}.\n", content_type="text/plain; charset=utf-8")
        return self.get_response(request)
