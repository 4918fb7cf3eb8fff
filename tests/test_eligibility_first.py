"""Eligibility first: the first thing /reset/ asks is the visit date, and a
patient whose 48 hours have not passed learns it before typing any personal
detail (docs/contract.md, the reset form).

A POST that carries none of the patient's details is the date step: it
answers with the too-early guidance, or with the rest of the form, the date
kept; it stores nothing. A POST carrying every field is still handled in
one step, and the page served at GET carries every hidden value it needs.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import Client

from requests_app.models import FamilyMember, HeldSubmission, OutboundEmail, RequestEvent, ResetRequest
from requests_app.practice_time import access_window_ends

from .conftest import valid_form_data

pytestmark = pytest.mark.django_db

# 11:00 in New York on Monday 15 June 2026.
NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)
TODAY = date(2026, 6, 15)
PERSONAL = ["first_name", "last_name", "date_of_birth", "email", "phone", "reason"]


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def assert_nothing_stored() -> None:
    assert ResetRequest.objects.count() == 0
    assert HeldSubmission.objects.count() == 0
    assert FamilyMember.objects.count() == 0
    assert RequestEvent.objects.count() == 0
    assert OutboundEmail.objects.count() == 0
    assert mail.outbox == []


def boxes(prefix: str, day: date) -> dict[str, str]:
    """A date as a person types it into the month, day and year boxes."""
    return {f"{prefix}_month": str(day.month), f"{prefix}_day": str(day.day), f"{prefix}_year": str(day.year)}


class _Inputs(HTMLParser):
    """What a browser sends from a page's POST form untouched: its inputs'
    names and values (hidden ones included), and nothing typed."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.names: set[str] = set()
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method") == "post":
            self._in_form = True
        if not self._in_form or tag not in ("input", "textarea", "select") or "name" not in a:
            return
        self.names.add(a["name"])
        if tag == "input" and a.get("type", "text") not in ("radio", "checkbox"):
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def page_inputs(html: str) -> _Inputs:
    parser = _Inputs()
    parser.feed(html)
    return parser


# --- GET: one question ------------------------------------------------------------


def test_it_asks_for_the_visit_date_first_and_nothing_else(client):
    response = client.get("/reset/")

    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r"<legend><h1[^>]*>When was your visit\?</h1></legend>", html)
    inputs = page_inputs(html)
    assert {"appointment_date_month", "appointment_date_day", "appointment_date_year"} <= inputs.names
    assert not [name for name in inputs.names if any(name.startswith(p) for p in PERSONAL)]
    assert ">Continue</button>" in html


def test_it_serves_every_hidden_value_a_one_step_post_needs(client):
    inputs = page_inputs(client.get("/reset/").content.decode())

    for name in ["csrfmiddlewaretoken", "form_started", "family-TOTAL_FORMS", "family-INITIAL_FORMS"]:
        assert inputs.fields.get(name, "") != "", name


# --- The date step ------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(boxes("appointment_date", TODAY), id="boxes"),
        pytest.param({"appointment_date": TODAY.isoformat()}, id="iso"),
    ],
)
def test_it_tells_a_patient_seen_today_to_wait_after_one_question(client, answer):
    response = client.post("/reset/", answer)

    assert response.status_code == 200
    assert "requests_app/too_early.html" in [t.name for t in response.templates]
    window_ends = access_window_ends(TODAY)
    assert response.context["window_ends"] == window_ends
    html = response.content.decode()
    # When to come back (midnight at the practice: the day is named), and
    # what to do meanwhile.
    assert "Wednesday, June 17" in html
    assert f'datetime="{window_ends.isoformat()}"' in html
    for words in ("signed the visit notes", "within 48 hours", "Spam or Junk", "Promotions, Social and Primary"):
        assert words in html
    inputs = page_inputs(html)
    assert not [name for name in inputs.names if any(name.startswith(p) for p in PERSONAL)]
    assert_nothing_stored()


def test_it_counts_the_window_from_the_practice_day_for_the_date_step(client):
    # Saturday's visit at 23:59 on Sunday, New York: still inside the window.
    with time_machine.travel(datetime(2026, 6, 14, 23, 59, tzinfo=access_window_ends(TODAY).tzinfo), tick=False):
        response = client.post("/reset/", boxes("appointment_date", date(2026, 6, 13)))

    assert response.context["window_ends"] == access_window_ends(date(2026, 6, 13))
    assert_nothing_stored()


def test_it_shows_the_rest_of_the_form_with_the_date_kept_once_the_window_has_passed(client):
    response = client.post("/reset/", boxes("appointment_date", date(2026, 6, 10)))

    assert response.status_code == 200
    assert "requests_app/reset_form.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert '<input type="hidden" name="appointment_date" value="2026-06-10">' in html
    assert "Wednesday, June 10, 2026" in html
    assert re.search(r'<a [^>]*href="/reset/"[^>]*>Change<span class="visually-hidden"> the date of your visit', html)
    inputs = page_inputs(html)
    for name in ["first_name", "last_name", "date_of_birth_month", "email", "phone", "reason", "details"]:
        assert name in inputs.names, name
    # Nothing to correct yet: no error summary, no error message.
    assert response.context["summary"] == []
    assert "error-message" not in html
    assert_nothing_stored()


def test_it_asks_again_for_a_date_it_cannot_read_and_stores_nothing(client):
    response = client.post("/reset/", {**boxes("appointment_date", TODAY), "appointment_date_month": "13"})

    assert response.status_code == 200
    assert "requests_app/reset_visit.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert "The date of your visit must be a real date" in html
    assert 'value="13"' in html
    assert_nothing_stored()


def test_it_refuses_a_visit_in_the_future_at_the_date_step(client):
    response = client.post("/reset/", boxes("appointment_date", TODAY + timedelta(days=1)))

    assert response.context["form"].errors["appointment_date"] == [
        "The date of your visit must be today or in the past"
    ]
    assert_nothing_stored()


def test_it_takes_a_date_step_with_the_hidden_values_of_the_page(client):
    # What a browser sends from the first page: the hidden values too.
    inputs = page_inputs(client.get("/reset/").content.decode())

    response = client.post("/reset/", {**inputs.fields, **boxes("appointment_date", date(2026, 6, 10))})

    assert "requests_app/reset_form.html" in [t.name for t in response.templates]
    assert_nothing_stored()


def test_it_counts_the_date_step_against_the_per_address_limit(client, settings):
    settings.SUBMIT_RATE_PER_ADDRESS = "2/h"

    answers = [client.post("/reset/", boxes("appointment_date", TODAY)).status_code for _ in range(3)]

    assert answers == [200, 200, 429]


# --- The rest of the form, and the one-step POST ------------------------------------


def test_it_files_the_rest_of_the_form_as_a_browser_sends_it(client, django_capture_on_commit_callbacks):
    page = client.post("/reset/", boxes("appointment_date", date(2026, 6, 10))).content.decode()
    typed = {
        "first_name": "Maria",
        "last_name": "Lopez",
        **boxes("date_of_birth", date(1980, 4, 23)),
        "email": "maria.lopez@example.com",
        "phone": "555-201-3344",
        "reason": "link_expired",
        "others_use_login": "no",
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/reset/", {**page_inputs(page).fields, **typed})

    assert response.status_code == 303
    request = ResetRequest.objects.get()
    assert response["Location"] == f"/reset/submitted/{request.reference}/"
    assert (request.appointment_date, request.date_of_birth) == (date(2026, 6, 10), date(1980, 4, 23))
    assert request.family_members.count() == 0


def test_it_still_files_a_one_step_post_of_every_field(submit):
    response = submit(valid_form_data())

    assert response.status_code == 303
    assert ResetRequest.objects.count() == 1


def test_it_still_answers_a_one_step_post_inside_the_window_with_the_guidance(submit):
    response = submit(valid_form_data(appointment_date=TODAY.isoformat()))

    assert "requests_app/too_early.html" in [t.name for t in response.templates]
    assert_nothing_stored()


def test_a_client_that_reads_the_page_once_and_posts_every_field_files_a_normal_request(
    settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_MIN_SECONDS = 3
    browser = Client(enforce_csrf_checks=True)
    with time_machine.travel(NOW, tick=False) as traveller:
        inputs = page_inputs(browser.get("/reset/").content.decode())
        traveller.shift(timedelta(seconds=settings.SUBMIT_MIN_SECONDS + 1))
        with django_capture_on_commit_callbacks(execute=True):
            response = browser.post("/reset/", {**inputs.fields, **valid_form_data()})

    assert response.status_code == 303
    request = ResetRequest.objects.get()
    assert response["Location"] == f"/reset/submitted/{request.reference}/"
    assert HeldSubmission.objects.count() == 0
    assert [m.to for m in mail.outbox] == [["maria.lopez@example.com"], ["staff@practice.example"]]


def test_it_holds_a_one_step_post_sent_back_sooner_than_the_minimum(settings, django_capture_on_commit_callbacks):
    settings.SUBMIT_MIN_SECONDS = 3
    browser = Client(enforce_csrf_checks=True)
    inputs = page_inputs(browser.get("/reset/").content.decode())

    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post("/reset/", {**inputs.fields, **valid_form_data()})

    assert response.status_code == 303
    assert list(HeldSubmission.objects.values_list("why", flat=True)) == ["too_fast"]
    assert ResetRequest.objects.count() == 0


# --- The honeypot on the first page ---------------------------------------------------


def test_it_carries_a_honeypot_filled_in_at_the_date_step_to_the_rest_of_the_form(client, submit):
    bot_page = client.post(
        "/reset/", {**boxes("appointment_date", date(2026, 6, 10)), "website": "http://spam.example"}
    )
    inputs = page_inputs(bot_page.content.decode())
    assert inputs.fields["website"] == "http://spam.example"

    response = submit({**inputs.fields, **valid_form_data(appointment_date="2026-06-10")})

    assert response.status_code == 303
    assert list(HeldSubmission.objects.values_list("why", flat=True)) == ["honeypot"]
    assert ResetRequest.objects.count() == 0


def test_it_never_serves_a_bots_honeypot_value_to_the_next_patient(client):
    # The empty rest of the form is kept rendered per language: never one
    # that carries a value.
    Client().post("/reset/", {**boxes("appointment_date", date(2026, 6, 10)), "website": "http://spam.example"})

    inputs = page_inputs(client.post("/reset/", boxes("appointment_date", date(2026, 6, 9))).content.decode())

    assert inputs.fields["website"] == ""
