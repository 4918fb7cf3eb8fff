"""The 48-hour rule: a reset request is accepted only once ACCESS_LINK_HOURS
have passed since the start of the appointment day in the practice's time
zone. Before that the form answers with the guidance (200) and stores and
sends nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core import mail

from requests_app.models import OutboundEmail, RequestEvent, ResetRequest

from .conftest import valid_form_data

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
# A June visit: New York is on daylight time (UTC-4) all week.
VISIT = "2026-06-10"
NY_DAY_START = datetime(2026, 6, 10, tzinfo=NEW_YORK)


def visit_at(time_machine: Any, moment: datetime, submit: Any, appointment_date: str = VISIT) -> Any:
    time_machine.move_to(moment, tick=False)
    return submit(valid_form_data(appointment_date=appointment_date))


def assert_guidance(response: Any, hours: int, window_ends: datetime) -> None:
    assert response.status_code == 200
    assert str(hours) in response.content.decode()
    assert response.context["window_ends"] == window_ends
    assert ResetRequest.objects.count() == 0
    assert RequestEvent.objects.count() == 0
    assert OutboundEmail.objects.count() == 0
    assert mail.outbox == []


def assert_accepted(response: Any) -> None:
    assert response.status_code == 303
    request = ResetRequest.objects.get()
    assert response["Location"] == f"/reset/submitted/{request.reference}/"
    assert [m.to for m in mail.outbox] == [[request.email], ["staff@practice.example"]]


def test_it_shows_the_guidance_one_minute_before_the_48_hours_have_passed(submit, time_machine):
    response = visit_at(time_machine, NY_DAY_START + timedelta(hours=47, minutes=59), submit)

    assert_guidance(response, 48, NY_DAY_START + timedelta(hours=48))


def test_it_accepts_the_request_once_48_hours_have_passed(submit, time_machine):
    assert_accepted(visit_at(time_machine, NY_DAY_START + timedelta(hours=48), submit))


def test_it_shows_the_guidance_on_the_day_of_the_visit(submit, time_machine):
    response = visit_at(time_machine, datetime(2026, 6, 10, 18, 30, tzinfo=NEW_YORK), submit)

    assert_guidance(response, 48, NY_DAY_START + timedelta(hours=48))


def test_it_counts_from_the_start_of_the_day_in_the_practice_time_zone(submit, time_machine):
    # 03:30 UTC on the 12th is 23:30 on the 11th in New York: 47.5 hours
    # into the window there, though 51.5 hours after midnight UTC.
    moment = datetime(2026, 6, 12, 3, 30, tzinfo=UTC)

    response = visit_at(time_machine, moment, submit)

    assert_guidance(response, 48, NY_DAY_START + timedelta(hours=48))


def test_it_accepts_at_the_same_moment_for_a_practice_on_utc(submit, time_machine, settings):
    settings.PRACTICE_TIME_ZONE = "UTC"

    assert_accepted(visit_at(time_machine, datetime(2026, 6, 12, 3, 30, tzinfo=UTC), submit))


def test_it_opens_the_window_earlier_for_a_practice_east_of_utc(submit, time_machine, settings):
    settings.PRACTICE_TIME_ZONE = "Asia/Tokyo"
    # Midnight of the 10th in Tokyo is 15:00 UTC on the 9th; 48 hours later
    # it is 15:00 UTC on the 11th, still the morning of the 11th in New York.
    tokyo_day_start = datetime(2026, 6, 10, tzinfo=ZoneInfo("Asia/Tokyo"))

    too_early = visit_at(time_machine, tokyo_day_start + timedelta(hours=47, minutes=59), submit)
    assert_guidance(too_early, 48, tokyo_day_start + timedelta(hours=48))

    assert_accepted(visit_at(time_machine, tokyo_day_start + timedelta(hours=48), submit))


def test_it_counts_real_hours_across_the_spring_clock_change(submit, time_machine):
    # New York moves its clocks forward at 02:00 on Sunday 2026-03-08: from
    # midnight on Saturday the 7th, 48 real hours end at 01:00 on Monday the
    # 9th by the wall clock, not at midnight.
    day_start = datetime(2026, 3, 7, tzinfo=NEW_YORK)
    window_ends = day_start.astimezone(UTC) + timedelta(hours=48)
    assert window_ends == datetime(2026, 3, 9, 1, 0, tzinfo=NEW_YORK)

    response = visit_at(time_machine, window_ends - timedelta(minutes=30), submit, appointment_date="2026-03-07")

    assert_guidance(response, 48, window_ends)


def test_it_counts_real_hours_across_the_autumn_clock_change(submit, time_machine):
    # Clocks go back at 02:00 on Sunday 2026-11-01: 48 real hours from
    # midnight on Saturday the 31st end at 23:00 on Sunday by the wall clock.
    day_start = datetime(2026, 10, 31, tzinfo=NEW_YORK)
    window_ends = day_start.astimezone(UTC) + timedelta(hours=48)
    assert window_ends == datetime(2026, 11, 1, 23, 0, tzinfo=NEW_YORK)

    assert_accepted(visit_at(time_machine, window_ends + timedelta(minutes=30), submit, appointment_date="2026-10-31"))


def test_it_waits_longer_when_access_link_hours_is_raised(submit, time_machine, settings):
    settings.ACCESS_LINK_HOURS = 72

    response = visit_at(time_machine, NY_DAY_START + timedelta(hours=71, minutes=59), submit)

    assert_guidance(response, 72, NY_DAY_START + timedelta(hours=72))


def test_it_accepts_once_the_raised_access_link_hours_have_passed(submit, time_machine, settings):
    settings.ACCESS_LINK_HOURS = 72

    assert_accepted(visit_at(time_machine, NY_DAY_START + timedelta(hours=72), submit))


def test_it_accepts_earlier_when_access_link_hours_is_lowered(submit, time_machine, settings):
    settings.ACCESS_LINK_HOURS = 24

    assert_accepted(visit_at(time_machine, NY_DAY_START + timedelta(hours=24), submit))


def test_it_checks_the_window_before_anything_is_stored_for_a_repeat_request(submit, time_machine):
    # A second, early request from someone with an older open request is not
    # recorded on it either: inside the window nothing is stored at all.
    time_machine.move_to(NY_DAY_START + timedelta(days=10), tick=False)
    assert submit(valid_form_data(appointment_date="2026-06-01")).status_code == 303
    first = ResetRequest.objects.get()
    events = first.events.count()
    mail.outbox.clear()

    response = submit(valid_form_data(appointment_date="2026-06-19"))

    assert response.status_code == 200
    assert ResetRequest.objects.count() == 1
    assert first.events.count() == events
    assert mail.outbox == []
