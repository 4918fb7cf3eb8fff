"""The visit date's bounds: not in the future, not before the date of birth,
not more than 10 years ago; and the 48-hour window's end computed for any
date without overflowing, in any practice time zone."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.test import override_settings

from requests_app.models import ResetRequest
from requests_app.practice_time import access_window_ends

from .conftest import valid_form_data

# 11:00 in New York, 00:00 the next day in Tokyo.
NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)
BEFORE_BIRTH = "The visit date cannot be before the date of birth. Please check both dates."
TOO_LONG_AGO = "Please check the year of your visit. We can only help with visits in the last 10 years."
ZONES = ["America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"]


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def visit_errors(response: Any) -> list[str]:
    assert response.status_code == 200
    return list(response.context["form"].errors.get("appointment_date", []))


def assert_nothing_stored() -> None:
    assert ResetRequest.objects.count() == 0
    assert mail.outbox == []


# --- Not before the date of birth ------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_a_visit_before_the_date_of_birth_but_not_one_on_it(submit):
    response = submit(valid_form_data(date_of_birth="2024-03-01", appointment_date="2024-02-29"))

    assert visit_errors(response) == [BEFORE_BIRTH]
    assert "date_of_birth" not in response.context["form"].errors
    assert_nothing_stored()

    assert submit(valid_form_data(date_of_birth="2024-03-01", appointment_date="2024-03-01")).status_code == 303
    assert ResetRequest.objects.get().appointment_date == date(2024, 3, 1)


@pytest.mark.django_db
def test_it_keeps_both_dates_as_typed_when_it_refuses_them(submit):
    response = submit(valid_form_data(date_of_birth="2024-03-01", appointment_date="2024-02-29"))

    # Dates come back as their month, day and year boxes.
    html = response.content.decode()
    boxes = dict(re.findall(r'name="((?:date_of_birth|appointment_date)_(?:month|day|year))" value="([^"]*)"', html))
    assert [boxes[f"date_of_birth_{part}"] for part in ("month", "day", "year")] == ["03", "01", "2024"]
    assert [boxes[f"appointment_date_{part}"] for part in ("month", "day", "year")] == ["02", "29", "2024"]


@pytest.mark.django_db
def test_it_explains_a_visit_before_the_birth_in_spanish(submit):
    response = submit(
        valid_form_data(date_of_birth="2024-03-01", appointment_date="2024-02-29"), HTTP_ACCEPT_LANGUAGE="es"
    )

    assert visit_errors(response) == [
        "La fecha de la consulta no puede ser anterior a la fecha de nacimiento. Por favor, revise las dos fechas."
    ]


# --- Not more than 10 years ago -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["2016-06-14", "2000-01-01", "1900-01-01", "0001-01-01"])
def test_it_refuses_a_visit_more_than_10_years_ago(submit, value):
    response = submit(valid_form_data(date_of_birth="1890-01-01", appointment_date=value))

    assert TOO_LONG_AGO in visit_errors(response)
    assert_nothing_stored()


@pytest.mark.django_db
def test_it_refuses_a_visit_a_day_more_than_10_years_ago_but_not_one_exactly_10_years_ago(submit):
    assert visit_errors(submit(valid_form_data(appointment_date="2016-06-14"))) == [TOO_LONG_AGO]
    assert_nothing_stored()

    assert submit(valid_form_data(appointment_date="2016-06-15")).status_code == 303
    assert ResetRequest.objects.get().appointment_date == date(2016, 6, 15)


@pytest.mark.django_db
def test_it_counts_10_years_back_from_29_february_to_28_february(submit, time_machine):
    time_machine.move_to(datetime(2028, 2, 29, 15, 0, tzinfo=UTC), tick=False)

    assert TOO_LONG_AGO in visit_errors(submit(valid_form_data(appointment_date="2018-02-27")))
    assert submit(valid_form_data(appointment_date="2018-02-28")).status_code == 303


@pytest.mark.django_db
def test_it_explains_a_visit_too_long_ago_in_spanish(submit):
    response = submit(valid_form_data(appointment_date="2001-01-01"), HTTP_ACCEPT_LANGUAGE="es")

    assert visit_errors(response) == [
        "Por favor, revise el año de su consulta. Solo podemos ayudarle con consultas de los últimos 10 años."
    ]


# --- The first day of the calendar, in Tokyo: an answer, not a 500 ----------------


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ZONES)
def test_it_answers_a_visit_in_year_one_with_the_message_in_any_time_zone(client, zone):
    with override_settings(PRACTICE_TIME_ZONE=zone):
        response = client.post("/reset/", valid_form_data(date_of_birth="1980-04-23", appointment_date="0001-01-01"))

    assert visit_errors(response) == [TOO_LONG_AGO]
    assert_nothing_stored()


# --- access_window_ends for any date --------------------------------------------

EDGE_DAYS = [
    *(date.min + timedelta(days=n) for n in range(3)),
    *(date.max - timedelta(days=n) for n in range(3)),
]


def test_access_window_ends_is_defined_for_every_day_in_every_time_zone(settings):
    # Defence in depth: the form lets through ten years, but whatever date
    # reaches it, the window's end is an instant any zone can show, long
    # past for the first days of the calendar and far off for the last.
    for zone in ZONES:
        settings.PRACTICE_TIME_ZONE = zone
        for day in EDGE_DAYS:
            ends = access_window_ends(day)

            assert ends.tzinfo is not None, (zone, day)
            assert (ends < NOW) == (day.year == 1), (zone, day)
            for shown_in in ZONES:
                ends.astimezone(ZoneInfo(shown_in))
