"""Sessions, request.user, the second factor and messages run for the staff
pages only (portal_reset/staff_middleware.py): a patient's page has no
login, and paid for all four on every request. What the patient's pages
do need works without them — CSRF (its secret in a cookie), the language
switch (a cookie) — and the admin keeps all of it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from requests_app.models import ResetRequest

from .conftest import valid_form_data

pytestmark = pytest.mark.django_db


def test_a_patient_page_has_no_session_user_or_messages_even_for_signed_in_staff(staff_client: Client) -> None:
    response = staff_client.get("/reset/")

    assert response.status_code == 200
    request = response.wsgi_request
    assert not hasattr(request, "session")
    assert not hasattr(request, "user")
    assert not hasattr(request, "_messages")
    # The staff session is neither read nor sent back (nor extended).
    assert "sessionid" not in response.cookies


def test_the_staff_pages_keep_their_session_user_second_factor_and_messages(staff_client: Client) -> None:
    response = staff_client.get("/admin/")

    assert response.status_code == 200
    request = response.wsgi_request
    assert request.user.is_authenticated
    assert hasattr(request.user, "is_verified")  # django-otp's
    assert request.session.session_key
    assert hasattr(request, "_messages")


def test_the_admin_sign_in_page_has_a_session_for_its_login(client: Client) -> None:
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert hasattr(response.wsgi_request, "session")


def test_the_reset_form_posts_with_its_csrf_token_and_no_session(form_data: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/reset/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None and "csrftoken" in page.cookies

    refused = Client(enforce_csrf_checks=True).post("/reset/", valid_form_data())
    accepted = browser.post("/reset/", {**valid_form_data(), "csrfmiddlewaretoken": token[1]})

    assert refused.status_code == 403
    assert accepted.status_code == 303
    assert ResetRequest.objects.count() == 1
    assert "sessionid" not in accepted.cookies


def test_the_language_switch_works_without_a_session(client: Client) -> None:
    switched = client.get("/reset/?lang=es")
    page = client.get("/reset/")

    assert switched.status_code == 303
    assert page.headers["Content-Language"] == "es"
