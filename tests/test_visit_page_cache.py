"""The date step's empty question is drawn once per process, language, day
(its hint is a date a week ago) and heading, then kept in the "fragments"
cache, as the rest of the form's empty fields are: every page still reads
as if drawn afresh, and a question with an answer or an error is always
drawn afresh."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import caches
from django.template.loader import render_to_string
from django.test import Client

from requests_app.forms import VisitDateForm
from requests_app.views.reset import visit_page_context

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def visit_form(response: Any) -> str:
    """The page's date-step form, without the values that differ on every
    page (the CSRF token, the signed timing value)."""
    html = response.content.decode()
    form = re.search(r"<form[^>]*reset-form-visit.*?</form>", html, re.S)
    assert form, html
    return re.sub(r'name="(csrfmiddlewaretoken|form_started)" value="[^"]*"', r'name="\1" value=""', form[0])


PAGES: dict[str, Callable[[], Any]] = {
    "in English": lambda: Client().get("/reset/"),
    "in Spanish": lambda: Client().get("/reset/", HTTP_ACCEPT_LANGUAGE="es"),
}


def test_each_language_s_page_drawn_from_the_cache_reads_as_drawn_afresh():
    afresh = {}
    for name, page in PAGES.items():
        caches["fragments"].clear()
        afresh[name] = visit_form(page())
    assert afresh["in English"] != afresh["in Spanish"]

    caches["fragments"].clear()
    for page in PAGES.values():
        page()
    for name, page in PAGES.items():
        assert visit_form(page()) == afresh[name], name


def test_the_question_drawn_as_the_heading_is_kept_apart_from_the_one_that_is_not():
    def drawn(form: VisitDateForm) -> str:
        return render_to_string("requests_app/form/visit_form.html", visit_page_context(form))

    caches["fragments"].clear()
    not_heading = drawn(VisitDateForm(heading=False))
    caches["fragments"].clear()

    assert "<h1" in drawn(VisitDateForm())
    assert drawn(VisitDateForm(heading=False)) == not_heading
    assert "<h1" not in not_heading


def test_the_hint_moves_on_with_the_practice_s_day(time_machine):
    assert "For example, 6 8 2026" in visit_form(PAGES["in English"]())

    # 01:00 the next morning in New York: a new day, the page kept since 11:00.
    time_machine.move_to(NOW + timedelta(hours=14), tick=False)
    tomorrow = visit_form(PAGES["in English"]())

    assert "For example, 6 9 2026" in tomorrow and "6 8 2026" not in tomorrow


def test_an_answer_and_its_error_are_drawn_afresh():
    Client().get("/reset/")

    response = Client().post(
        "/reset/", {"appointment_date_month": "13", "appointment_date_day": "40", "appointment_date_year": "2026"}
    )

    form = visit_form(response)
    assert 'name="appointment_date_month" value="13"' in form
    assert 'name="appointment_date_day" value="40"' in form
    assert "is-invalid" in form
