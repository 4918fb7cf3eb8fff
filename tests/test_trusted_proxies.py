"""CLIENT_IP_HEADER and X-Forwarded-Proto are believed only from a peer in
TRUSTED_PROXIES: a client reaching gunicorn directly can neither rotate the
header to escape the per-address limit and the admin lockout, nor claim
HTTPS. IPv6 clients are counted by their /64."""

from __future__ import annotations

import re
import subprocess
import sys
from urllib.parse import urlencode

import pytest
import yaml
from django.test import Client, RequestFactory

from portal_reset.client_address import axes_client_ip, client_ip, parse_networks

from .factories import StaffUserFactory
from .support import REPO
from .support.processes import base_env

pytest_plugins = ["tests.support.web_server"]
pytestmark = pytest.mark.django_db

UNTRUSTED = "203.0.113.9"
PROXY = "10.0.0.2"
# Patient browsers the proxy would name.
ROTATED = [f"198.51.100.{n}" for n in range(1, 6)]


@pytest.fixture
def behind_proxy(settings):
    """Production's shape: the proxy at 10.0.0.2 writes X-Real-IP."""
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    settings.TRUSTED_PROXIES = parse_networks("TRUSTED_PROXIES", f"{PROXY},::1")
    settings.SUBMIT_RATE_PER_ADDRESS = "2/h"
    return settings


def post_form(client: Client, n: int, **extra: str):
    return client.post("/reset/", {"first_name": f"n{n}"}, **extra)


# --- TRUSTED_PROXIES itself -----------------------------------------------------


def manage_check(tmp_path, **values: str) -> subprocess.CompletedProcess[str]:
    env = base_env(DEBUG="1", VAR_DIR=str(tmp_path / "var"), **values)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("bad", ["proxy.internal", "10.0.0.1/8", "300.1.2.3", "2001:db8::/200"])
def test_it_refuses_to_start_with_a_bad_trusted_proxies_entry_naming_it(tmp_path, bad):
    result = manage_check(tmp_path, TRUSTED_PROXIES=f"127.0.0.1, {bad}")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line
    assert "TRUSTED_PROXIES" in last_line
    assert repr(bad) in last_line


def trusted_proxies_setting(tmp_path, **values: str) -> str:
    env = base_env(DEBUG="1", VAR_DIR=str(tmp_path / "var"), **values)
    code = "import django; django.setup(); from django.conf import settings; print(*settings.TRUSTED_PROXIES)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_it_reads_addresses_and_networks_of_both_families(tmp_path):
    value = "172.30.0.0/24, 10.1.2.3,2001:db8::/64,::1"
    assert trusted_proxies_setting(tmp_path, TRUSTED_PROXIES=value) == "172.30.0.0/24 10.1.2.3/32 2001:db8::/64 ::1/128"
    assert trusted_proxies_setting(tmp_path) == "127.0.0.1/32 ::1/128"


def test_gunicorn_believes_forwarded_headers_from_the_trusted_proxies_only(monkeypatch):
    """gunicorn's own forwarded_allow_ips (its wsgi.url_scheme) is
    TRUSTED_PROXIES; the FORWARDED_ALLOW_IPS=* of older .env files is not read."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")

    def forwarded_allow_ips() -> object:
        config: dict[str, object] = {}
        exec((REPO / "gunicorn.conf.py").read_text(), config)  # noqa: S102 - our own file
        return config["forwarded_allow_ips"]

    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)
    assert forwarded_allow_ips() == "127.0.0.1,::1"
    monkeypatch.setenv("TRUSTED_PROXIES", "172.30.0.0/24")
    assert forwarded_allow_ips() == "172.30.0.0/24"


def test_the_compose_file_trusts_its_own_network_s_gateway():
    """The proxy reaches gunicorn through the published port, so gunicorn
    sees the compose network's gateway: the network's subnet is pinned and
    TRUSTED_PROXIES holds it, or every patient shares one address and the
    HTTPS redirect never ends."""
    import ipaddress

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    [subnet] = [pool["subnet"] for pool in compose["networks"]["default"]["ipam"]["config"]]
    network = ipaddress.ip_network(subnet)
    assert network.is_private
    web_env = compose["services"]["web"]["environment"]
    trusted = parse_networks(
        "TRUSTED_PROXIES", re.sub(r"\$\{TRUSTED_PROXIES:-(.*)\}", r"\1", web_env["TRUSTED_PROXIES"])
    )
    gateway = next(network.hosts())
    assert any(gateway in proxies for proxies in trusted)
    # .env.example says the same, for the containers that read only .env.
    env_example = (REPO / ".env.example").read_text()
    assert re.search(rf"^TRUSTED_PROXIES={re.escape(subnet)}$", env_example, re.MULTILINE)


# --- The client's address -------------------------------------------------------


def test_it_counts_a_client_that_rotates_the_header_as_one_when_it_is_not_the_proxy(client, behind_proxy):
    answers = [
        post_form(client, n, REMOTE_ADDR=UNTRUSTED, HTTP_X_REAL_IP=ip).status_code for n, ip in enumerate(ROTATED)
    ]
    assert answers == [200, 200, 429, 429, 429]


def test_it_counts_the_clients_the_proxy_names_apart(client, behind_proxy):
    answers = [post_form(client, n, REMOTE_ADDR=PROXY, HTTP_X_REAL_IP=ip).status_code for n, ip in enumerate(ROTATED)]
    same = [post_form(client, n, REMOTE_ADDR=PROXY, HTTP_X_REAL_IP=ROTATED[0]).status_code for n in range(2)]
    # And a client on the proxy's own network, but not the proxy, is itself.
    neighbour = [
        post_form(client, n, REMOTE_ADDR="10.0.0.3", HTTP_X_REAL_IP=ip).status_code for n, ip in enumerate(ROTATED)
    ]
    assert (answers, same, neighbour) == ([200] * 5, [200, 429], [200, 200, 429, 429, 429])


def test_it_takes_the_right_most_forwarded_for_entry_and_only_from_the_proxy(settings):
    settings.CLIENT_IP_HEADER = "X-Forwarded-For"
    settings.TRUSTED_PROXIES = parse_networks("TRUSTED_PROXIES", PROXY)
    factory = RequestFactory()
    forwarded = {"HTTP_X_FORWARDED_FOR": "192.0.2.1, 198.51.100.7"}

    assert client_ip(factory.get("/", REMOTE_ADDR=PROXY, **forwarded)) == "198.51.100.7"
    assert client_ip(factory.get("/", REMOTE_ADDR=UNTRUSTED, **forwarded)) == UNTRUSTED


def test_it_counts_an_ipv6_client_by_its_slash_64(client, settings):
    settings.SUBMIT_RATE_PER_ADDRESS = "2/h"
    same_64 = ["2001:db8:1:2::1", "2001:db8:1:2:ffff::5", "2001:db8:1:2:abcd:1:2:3"]
    answers = [post_form(client, n, REMOTE_ADDR=ip).status_code for n, ip in enumerate(same_64)]
    other_64 = post_form(client, 9, REMOTE_ADDR="2001:db8:1:3::1").status_code
    assert (answers, other_64) == ([200, 200, 429], 200)


def test_it_names_the_client_for_the_rate_limit_and_for_axes(settings):
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    factory = RequestFactory()

    def both(remote: str, **headers: str) -> tuple[str, str]:
        request = factory.get("/", REMOTE_ADDR=remote, **headers)
        return client_ip(request), axes_client_ip(request)

    assert both("2001:db8:1:2:3:4:5:6") == ("2001:db8:1:2::/64", "2001:db8:1:2::")
    assert both("::1", HTTP_X_REAL_IP="2001:db8:9:9::1") == ("2001:db8:9:9::/64", "2001:db8:9:9::")
    assert both("::ffff:203.0.113.9") == ("203.0.113.9", "203.0.113.9")
    assert both("127.0.0.1", HTTP_X_REAL_IP="198.51.100.4") == ("198.51.100.4", "198.51.100.4")
    assert both("127.0.0.1", HTTP_X_REAL_IP="not-an-address") == ("127.0.0.1", "127.0.0.1")


# --- The admin lockout ----------------------------------------------------------

LOGIN = "/admin/login/?next=/admin/"


def wrong_password(client: Client, username: str, **extra: str) -> int:
    return client.post(LOGIN, {"username": username, "password": "wrong password"}, **extra).status_code


def test_it_locks_out_an_address_that_rotates_the_header_when_it_is_not_the_proxy(behind_proxy):
    client = Client()
    answers = [
        wrong_password(client, f"user{n}", REMOTE_ADDR=UNTRUSTED, HTTP_X_REAL_IP=ip) for n, ip in enumerate(ROTATED)
    ]
    assert answers == [200, 200, 200, 429, 429]


def test_it_locks_out_an_ipv6_slash_64_across_its_addresses():
    StaffUserFactory(username="nurse")
    client = Client()
    addresses = [f"2001:db8:1:2::{n:x}" for n in range(1, 6)]
    answers = [wrong_password(client, f"user{n}", REMOTE_ADDR=ip) for n, ip in enumerate(addresses)]
    assert answers == [200, 200, 200, 429, 429]
    # The right password from the same /64 is refused too; another /64 is not locked.
    assert client.post(LOGIN, {"username": "nurse", "password": "x"}, REMOTE_ADDR="2001:db8:1:2::99").status_code == 429
    assert wrong_password(client, "someone", REMOTE_ADDR="2001:db8:1:3::1") == 200


# --- HTTPS ----------------------------------------------------------------------


@pytest.fixture
def production_https(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXIES = parse_networks("TRUSTED_PROXIES", PROXY)


def test_it_redirects_a_client_that_claims_https_when_it_is_not_the_proxy(client, production_https):
    claimed = client.get("/reset/", REMOTE_ADDR=UNTRUSTED, HTTP_X_FORWARDED_PROTO="https")
    from_proxy = client.get("/reset/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    assert claimed.status_code == 301
    assert claimed["Location"].startswith("https://")
    assert from_proxy.status_code == 200


def test_a_client_that_claims_https_is_not_secure_when_it_is_not_the_proxy(production_https):
    seen = {}

    def view(request):
        from django.http import HttpResponse

        seen["secure"] = request.is_secure()
        return HttpResponse()

    from portal_reset.middleware import TrustedProxyMiddleware

    request = RequestFactory().get("/", REMOTE_ADDR=UNTRUSTED, HTTP_X_FORWARDED_PROTO="https")
    TrustedProxyMiddleware(view)(request)
    assert seen == {"secure": False}
    assert "HTTP_X_FORWARDED_PROTO" not in request.META


# --- against a real gunicorn ----------------------------------------------------

# Only 127.0.0.1 is the proxy; 127.0.0.2 is a client connecting directly.
WEB_ENV = {
    "CLIENT_IP_HEADER": "X-Real-IP",
    "TRUSTED_PROXIES": "127.0.0.1",
    "SUBMIT_RATE_PER_ADDRESS": "2/h",
}


def gunicorn_post(web_server, source: str, client_address: str, n: int) -> int:
    """An (invalid) reset form with a valid CSRF token: counted against the
    address, answered 200 with the form's errors, or 429."""
    page = web_server.request("GET", "/reset/", source=source)
    assert page.status == 200, page.body[:500]
    cookies = "; ".join(
        header.split(";", 1)[0] for header in page.headers.get_all("Set-Cookie") or [] if "csrftoken=" in header
    )
    token = cookies.split("=", 1)[1]
    response = web_server.request(
        "POST",
        "/reset/",
        body=urlencode({"csrfmiddlewaretoken": token, "first_name": f"n{n}"}).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": cookies,
            "X-Real-IP": client_address,
        },
        source=source,
    )
    return response.status


@pytest.mark.services
def test_gunicorn_counts_a_direct_client_rotating_x_real_ip_as_one(web_server):
    direct = [gunicorn_post(web_server, "127.0.0.2", ip, n) for n, ip in enumerate(ROTATED[:4])]
    through_proxy = [gunicorn_post(web_server, "127.0.0.1", f"192.0.2.{n}", n) for n in range(4)]
    assert (direct, through_proxy) == ([200, 200, 429, 429], [200, 200, 200, 200])


@pytest.mark.services
def test_gunicorn_believes_x_forwarded_proto_from_the_proxy_only(web_server):
    """HSTS is sent only on a request Django takes as secure."""
    https = {"X-Forwarded-Proto": "https"}
    direct = web_server.request("GET", "/reset/", headers=https, source="127.0.0.2")
    proxied = web_server.request("GET", "/reset/", headers=https, source="127.0.0.1")
    assert "Strict-Transport-Security" not in direct.headers
    assert "Strict-Transport-Security" in proxied.headers
