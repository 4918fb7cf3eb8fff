"""Every patient page is served with a Content-Security-Policy that allows
no inline script, and with the other protective headers."""

import re

import pytest

pytestmark = pytest.mark.django_db

PAGES = ["/", "/reset/", "/reset/submitted/K7QM-3XTD/", "/this-page-does-not-exist/"]


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


@pytest.mark.parametrize("path", PAGES)
def test_it_sends_a_policy_that_allows_no_inline_script(client, path):
    policy = directives(client.get(path))
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)


@pytest.mark.parametrize("path", PAGES)
def test_it_puts_no_inline_script_or_handler_in_a_patient_page(client, path):
    html = client.get(path).content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"\son[a-z]+=", html)


def test_it_sends_the_other_protective_headers(client):
    response = client.get("/reset/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
