"""Every response denies the camera, the microphone, geolocation and payment
(Permissions-Policy): public pages, the admin, error pages, the health check,
static files, HEAD, and the 400 for a body in another charset."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import path

pytestmark = pytest.mark.django_db

POLICY = "camera=(), microphone=(), geolocation=(), payment=()"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/reset/",
        "/reset/submitted/K7QM-3XTD/",
        "/status/not-a-token/",
        "/no-such-page/",
        "/healthz",
        "/admin/login/",
        "/admin/",
        "/static/css/site.css",
    ],
)
def test_it_sends_the_policy_on_every_page(client, path):
    response = client.get(path)
    assert response.status_code in (200, 302, 404), response.status_code
    assert response["Permissions-Policy"] == POLICY
    assert client.head(path)["Permissions-Policy"] == POLICY


def test_it_sends_the_policy_on_the_staff_pages(staff_client):
    assert staff_client.get("/admin/requests_app/resetrequest/")["Permissions-Policy"] == POLICY


def broken(request):
    raise RuntimeError("boom")


# A URLconf of this module's own, for a view that fails.
urlpatterns = [path("broken/", broken)]


def test_it_sends_the_policy_on_a_server_error(settings):
    settings.ROOT_URLCONF = __name__
    response = Client(raise_request_exception=False).get("/broken/")
    assert response.status_code == 500
    assert response["Permissions-Policy"] == POLICY


def test_it_sends_the_policy_on_refusals(client):
    bad_charset = client.generic(
        "POST", "/reset/", b"a=b", content_type="application/x-www-form-urlencoded; charset=latin-1"
    )
    not_allowed = client.delete("/reset/")
    assert (bad_charset.status_code, not_allowed.status_code) == (400, 405)
    assert bad_charset["Permissions-Policy"] == not_allowed["Permissions-Policy"] == POLICY
