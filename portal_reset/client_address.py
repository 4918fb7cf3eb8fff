"""The client's address, which rate limits and the login lockout key on."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's address: the socket's, or — behind a TLS proxy — the
    one the proxy wrote into CLIENT_IP_HEADER. Of a list (X-Forwarded-For)
    the right-most entry is taken: the one our proxy appended, which the
    client cannot forge. Anything that is not an IP address falls back to
    the socket's."""
    remote: str = request.META.get("REMOTE_ADDR", "") or "0.0.0.0"  # noqa: S104
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
    """django-axes's AXES_CLIENT_IP_CALLABLE: the same address."""
    return client_ip(request)
