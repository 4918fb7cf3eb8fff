"""A form body declared in a charset Django cannot decode is answered 400,
with a short plain page, on every URL, before anything reads it; and the
error handlers never read the body, so none of them can raise on it."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import Http404
from django.test import Client, RequestFactory
from django.urls import get_resolver

from requests_app.models import ResetRequest

pytest_plugins = ["tests.support.web_server"]
pytestmark = pytest.mark.django_db

URLS = ["/reset/", "/", "/admin/login/", "/status/x/", "/healthz", "/no-such-page/"]
FORM = "application/x-www-form-urlencoded"
BAD_CONTENT_TYPES = [
    f"{FORM}; charset=latin-1",
    f"{FORM}; charset=utf-16",
    f"{FORM}; charset=ISO-8859-1",
    f"{FORM}; charset=no-such-charset",
    f'{FORM}; charset="windows-1252"',
    "multipart/form-data; boundary=xyzzy; charset=latin-1",
    "multipart/form-data; boundary=xyzzy; charset=utf-16",
]
BODY = b"csrfmiddlewaretoken=x&first_name=Jos%E9"
# What a browser that has seen any page holds: a CSRF cookie, so that
# Django's CSRF check goes on to read the form's token from the body.
CSRF_COOKIE = "a" * 32


def csrf_client() -> Client:
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = CSRF_COOKIE
    return client


def assert_short_plain_400(response) -> None:
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert len(response.content) < 200


@pytest.mark.parametrize("content_type", BAD_CONTENT_TYPES)
@pytest.mark.parametrize("url", URLS)
def test_it_answers_a_body_in_another_charset_with_400_on_every_url(url, content_type):
    response = csrf_client().generic("POST", url, BODY, content_type=content_type)
    assert_short_plain_400(response)


@pytest.mark.parametrize("url", URLS)
def test_it_answers_400_whether_or_not_the_csrf_check_runs(client, url):
    """The test client skips the CSRF check; browsers without a cookie are
    refused by it before it reads the body. Either way: 400, not 405 or 403."""
    response = client.generic("POST", url, BODY, content_type=f"{FORM}; charset=latin-1")
    assert_short_plain_400(response)
    response = Client(enforce_csrf_checks=True).generic("POST", url, BODY, content_type=f"{FORM}; charset=latin-1")
    assert_short_plain_400(response)


def test_it_refuses_without_reading_the_body():
    from portal_reset.middleware import BodyCharsetMiddleware

    request = RequestFactory().generic("POST", "/reset/", BODY, content_type=f"{FORM}; charset=latin-1")

    def view(request):
        raise AssertionError("the request went past the charset check")

    response = BodyCharsetMiddleware(view)(request)

    assert_short_plain_400(response)
    assert not request._read_started  # type: ignore[attr-defined]


@pytest.mark.parametrize("charset", ["UTF8", "utf_8", "U8", '"utf8"'])
def test_it_takes_utf_8_under_any_of_its_names(client, form_data, charset):
    """UTF-8's aliases are UTF-8: the form is read, the request stored."""
    data = form_data(first_name="José", email="jose@example.com")
    response = client.generic("POST", "/reset/", urlencode(data).encode(), content_type=f"{FORM}; charset={charset}")
    assert response.status_code == 303
    assert ResetRequest.objects.get(email="jose@example.com").first_name == "José"


def test_it_leaves_other_content_types_to_the_views(client):
    """Only the two form types are decoded into request.POST; a JSON body in
    any charset reaches the view, which answers as it does to an empty form."""
    response = client.generic("POST", "/reset/", b"{}", content_type="application/json; charset=utf-16")
    assert response.status_code == 200
    response = client.generic("POST", "/reset/", BODY, content_type="multipart/form-data; charset=latin-1")
    assert_short_plain_400(response)  # no boundary: nothing Django can parse


@pytest.mark.parametrize(
    ("status", "exception"),
    [(400, BadRequest("bad")), (403, PermissionDenied()), (404, Http404()), (500, None)],
)
def test_the_error_handlers_never_read_the_body(status, exception):
    """Called as Django calls them, on a request whose body Django refuses to
    decode and that carries a CSRF cookie: they answer, they do not raise."""
    request = RequestFactory().generic("POST", "/reset/", BODY, content_type=f"{FORM}; charset=latin-1")
    request.COOKIES["csrftoken"] = CSRF_COOKIE
    handler = get_resolver().resolve_error_handler(status)

    response = handler(request) if exception is None else handler(request, exception=exception)

    assert response.status_code == status
    assert not request._read_started  # type: ignore[attr-defined]


# --- against a real gunicorn ----------------------------------------------------


@pytest.mark.services
def test_gunicorn_answers_400_with_a_short_log_line(web_server):
    offset = web_server.log_size()

    response = web_server.request(
        "POST",
        "/reset/",
        body=BODY,
        headers={"Content-Type": f"{FORM}; charset=latin-1", "Cookie": f"csrftoken={CSRF_COOKIE}"},
    )

    assert response.status == 400, response.body[:500]
    assert response.headers["Content-Type"].startswith("text/plain")
    logged = web_server.log_since(offset)
    assert "Traceback" not in logged
    assert "Error handling request" not in logged
    assert all(len(line) < 1000 for line in logged.splitlines()), max(map(len, logged.splitlines()))
