"""The client's address, which rate limits and the login lockout key on, and
which peers are our TLS proxy (TRUSTED_PROXIES), whose headers are believed.

Only a trusted proxy may tell us who the client is (CLIENT_IP_HEADER) or
that the request came over HTTPS (X-Forwarded-Proto): from anyone else a
client could rotate the first to escape every per-address limit, and forge
the second. ``TrustedProxyMiddleware`` (portal_reset/middleware.py) removes
both headers from a request whose peer is not a trusted proxy, before
anything reads them; ``client_ip`` asks the same question again, so that it
stays right for a request that did not come through the middleware.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# An IPv6 client usually holds a whole /64 (its home or phone network gets
# one): counting each address of it apart would give it 2**64 tries.
IPV6_CLIENT_PREFIX = 64


def parse_networks(name: str, value: str) -> tuple[Network, ...]:
    """A comma-separated list of addresses and CIDR networks, as settings
    read TRUSTED_PROXIES. Strict, as gunicorn's forwarded_allow_ips is: a
    network with host bits set (``10.0.0.1/8``) is a mistake, not a /8."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{name}: {entry!r} is not an IP address or a network in CIDR form ({exc})."
            ) from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """``text`` as an address, an IPv4-mapped IPv6 one as the IPv4 it is."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the peer on the socket (REMOTE_ADDR) is one of TRUSTED_PROXIES."""
    peer = _address(request.META.get("REMOTE_ADDR", "") or "")
    return peer is not None and any(peer in network for network in settings.TRUSTED_PROXIES)


def client_ip_header_key() -> str | None:
    """CLIENT_IP_HEADER as a request.META key, or None when it is not set."""
    header = settings.CLIENT_IP_HEADER
    return "HTTP_" + header.upper().replace("-", "_") if header else None


def _client_address(request: HttpRequest) -> Address | None:
    """The socket's address or — from a trusted proxy — the one the proxy
    wrote into CLIENT_IP_HEADER. Of a list (X-Forwarded-For) the right-most
    entry is taken: the one our proxy appended, which the client cannot
    forge. A header value that is not an address falls back to the socket's."""
    key = client_ip_header_key()
    if key and is_trusted_proxy(request):
        forwarded = _address(request.META.get(key, "").split(",")[-1])
        if forwarded is not None:
            return forwarded
    return _address(request.META.get("REMOTE_ADDR", "") or "")


def _client_network(request: HttpRequest) -> Network:
    address = _client_address(request)
    if address is None:
        return ipaddress.ip_network("0.0.0.0/32")
    prefix = IPV6_CLIENT_PREFIX if address.version == 6 else 32
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def client_ip(request: HttpRequest) -> str:
    """The client as the rate limits count it: its IPv4 address
    (``203.0.113.7``), or its IPv6 /64 (``2001:db8:1:2::/64``)."""
    network = _client_network(request)
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def axes_client_ip(request: HttpRequest) -> str:
    """django-axes's AXES_CLIENT_IP_CALLABLE: the same client, as a plain
    address, because axes stores it in a GenericIPAddressField: an IPv4
    address, or the first address of an IPv6 /64 (``2001:db8:1:2::``)."""
    return str(_client_network(request).network_address)
