"""A form whose CSRF check fails (an old tab, cookies off) answers 403 with a
page in the practice's voice, in the patient's language: what happened,
what to do, and for /reset/ the form again with a fresh token and what was
typed in it, escaped. Never Django's technical page; staff pages get a
plain English one. Nothing is stored (docs/contract.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core import mail
from django.test import Client, override_settings
from django.utils import translation
from django.utils.translation import gettext

from requests_app.models import HeldSubmission, ResetRequest

from .conftest import valid_form_data

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)
SPANISH = {"HTTP_ACCEPT_LANGUAGE": "es"}
HEADING = "Please send the form again"
# Django's own CSRF page, in English and in Spanish.
TECHNICAL = ("CSRF verification failed", "La verificación CSRF ha fallado", "Forbidden (403)", "Prohibido")


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def strict() -> Client:
    return Client(enforce_csrf_checks=True)


def assert_nothing_stored() -> None:
    assert ResetRequest.objects.count() == 0
    assert HeldSubmission.objects.count() == 0
    assert mail.outbox == []


def assert_practice_page(response: Any) -> str:
    assert response.status_code == 403
    html = response.content.decode()
    for words in TECHNICAL:
        assert words not in html
    assert html.count("<h1") == 1, "one heading for the page"
    return html


def hidden_values(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def test_it_answers_a_reset_post_without_a_token_with_the_form_again_and_what_was_typed(client):
    response = strict().post("/reset/", valid_form_data(first_name="Zelda", email="zelda@example.com"))

    html = assert_practice_page(response)
    assert f"<h1>{HEADING}</h1>" in html
    assert "open for a long time, or cookies are turned off" in html
    assert 'value="Zelda"' in html
    assert 'value="zelda@example.com"' in html
    assert re.search(r'value="link_expired"[^>]*checked', html)
    assert ">Send my request</button>" in html
    # What was typed, not judged: no error messages on this page.
    assert "error-message" not in html
    assert_nothing_stored()


def test_it_serves_a_fresh_token_with_which_the_form_goes_through(submit):
    browser = strict()
    page = browser.post("/reset/", valid_form_data(first_name="Zelda"))
    values = hidden_values(page.content.decode())
    assert values["csrfmiddlewaretoken"]
    assert values["form_started"]
    assert "csrftoken" in page.cookies  # the cookie the old tab had lost

    response = browser.post("/reset/", {**valid_form_data(first_name="Zelda"), **values})

    assert response.status_code == 303
    assert ResetRequest.objects.get().first_name == "Zelda"


def test_it_answers_in_spanish_to_a_spanish_browser(client):
    response = strict().post("/reset/", valid_form_data(first_name="Zelda"), **SPANISH)

    html = assert_practice_page(response)
    assert '<html lang="es">' in html
    assert response["Content-Language"] == "es"
    with translation.override("es"):
        assert gettext(HEADING) in html
        assert gettext("Send my request") in html
    assert "El enlace de invitación venció" in html
    assert 'value="Zelda"' in html
    assert_nothing_stored()


def test_it_gives_the_date_step_back_as_the_date_step(client):
    data = {"appointment_date_month": "6", "appointment_date_day": "10", "appointment_date_year": "2026"}

    html = assert_practice_page(strict().post("/reset/", data))

    assert re.search(r'name="appointment_date_month" value="6"', html)
    assert re.search(r'name="appointment_date_day" value="10"', html)
    assert ">Continue</button>" in html
    assert 'name="first_name"' not in html
    assert_nothing_stored()


def test_it_escapes_what_it_puts_back(client):
    hostile = '"><script>alert(1)</script>'

    html = assert_practice_page(strict().post("/reset/", valid_form_data(first_name=hostile, details=hostile)))

    main = html[html.index("<main") :]
    assert "<script>" not in main
    assert "&quot;&gt;&lt;script&gt;" in main


def test_it_answers_a_post_it_cannot_read_with_the_empty_form(client):
    response = strict().post("/reset/", data="not a form", content_type="text/plain")

    html = assert_practice_page(response)
    assert ">Continue</button>" in html


@override_settings(DEBUG=False)
def test_it_never_shows_the_technical_page_with_debug_off_either(client):
    assert_practice_page(strict().post("/reset/", valid_form_data()))


def test_it_answers_another_patient_form_with_the_message_alone(client):
    html = assert_practice_page(strict().post("/status/ABCD2345notarealsecretnotarealsecret/withdraw/", {}))

    assert HEADING in html
    assert "Go back to the page, reload it and try again" in html
    assert 'name="first_name"' not in html


@pytest.mark.parametrize("debug", [True, False])
def test_it_answers_staff_pages_plainly_in_english(client, debug):
    with override_settings(DEBUG=debug):
        response = strict().post("/admin/login/", {"username": "ada", "password": "x"}, **SPANISH)

    assert response.status_code == 403
    html = response.content.decode()
    assert "<h1>Forbidden (403)</h1>" in html
    assert "Go back, reload the page and try again." in html
    assert "CSRF verification failed" not in html  # Django's page (with DEBUG on, its technical one)
    assert HEADING not in html
