"""The due clock counts the practice's working hours (PRACTICE_HOURS, in
PRACTICE_TIME_ZONE, less PRACTICE_CLOSED_DATES): across weekends, closed
dates, lunch breaks and clock changes, while a request waits on the patient,
and in what the confirmation page and the acknowledgment promise. A request
filed on Friday evening is not overdue on Saturday evening."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured

from requests_app import services
from requests_app.models import ResetRequest
from requests_app.outbox.render import build_message
from requests_app.references import new_reference
from requests_app.selectors import resets_overdue
from requests_app.services.submission import Submission
from requests_app.working_hours import (
    add_working_hours,
    parse_closed_dates,
    parse_practice_hours,
    working_time_between,
)

from .factories import OutboundEmailFactory, ResetRequestFactory
from .test_settings import run_manage

NEW_YORK = ZoneInfo("America/New_York")
OFFICE = "Mon-Fri 08:00-17:00"
# SPEC's example: split days with a lunch break, and a short Friday.
SPLIT = "Mon-Thu 08:00-12:00, Mon-Thu 13:00-17:00, Fri 08:00-13:00"

# June 2026: Thursday the 11th, Friday the 12th, Monday the 15th.
FRIDAY_1630 = datetime(2026, 6, 12, 16, 30, tzinfo=NEW_YORK)
MONDAY_1530 = datetime(2026, 6, 15, 15, 30, tzinfo=NEW_YORK)


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


@pytest.fixture(autouse=True)
def _practice(settings: Any) -> None:
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    settings.TIME_ZONE = "America/New_York"
    settings.PRACTICE_HOURS = OFFICE
    settings.PRACTICE_CLOSED_DATES = ""
    settings.RESET_SLA_HOURS = 24


def file_request(**overrides: Any) -> ResetRequest:
    """A request filed now, through the service the form calls."""
    fields: dict[str, Any] = {
        "first_name": "Maria",
        "last_name": "Lopez",
        "date_of_birth": date(1980, 4, 23),
        "email": "maria.lopez@example.com",
        "phone": "+15552013344",
        "appointment_date": date(2026, 5, 1),
        "reason": "link_expired",
        **overrides,
    }
    return services.reset_submit(submission=Submission(**fields)).reset


def at(time_machine: Any, moment: datetime) -> None:
    time_machine.move_to(moment, tick=False)


# --- The arithmetic -----------------------------------------------------------------------


def test_a_request_filed_friday_afternoon_with_8_hours_is_due_monday_afternoon(settings):
    assert add_working_hours(FRIDAY_1630, 8) == MONDAY_1530
    assert working_time_between(FRIDAY_1630, MONDAY_1530) == timedelta(hours=8)


@pytest.mark.django_db
def test_submission_sets_the_due_time_in_working_hours(settings, time_machine):
    settings.RESET_SLA_HOURS = 8
    at(time_machine, FRIDAY_1630)

    assert file_request().due_at == MONDAY_1530


def test_it_counts_the_default_24_hours_over_three_working_days():
    # Friday 0.5 h, Monday 9 h, Tuesday 9 h, Wednesday 5.5 h.
    assert add_working_hours(FRIDAY_1630, 24) == ny(2026, 6, 17, 13, 30)


def test_it_skips_a_closed_date(settings):
    settings.PRACTICE_CLOSED_DATES = "2026-09-07"  # Labor Day, a Monday
    friday = ny(2026, 9, 4, 16, 30)

    assert add_working_hours(friday, 8) == ny(2026, 9, 8, 15, 30)
    assert working_time_between(friday, ny(2026, 9, 8, 15, 30)) == timedelta(hours=8)


def test_it_skips_several_closed_dates_in_a_row(settings):
    settings.PRACTICE_CLOSED_DATES = "2026-12-24, 2026-12-25,2026-12-28"
    assert add_working_hours(ny(2026, 12, 23, 16, 0), 2) == ny(2026, 12, 29, 9, 0)


@pytest.mark.parametrize(
    ("filed", "due"),
    [
        (ny(2026, 6, 13, 11, 0), ny(2026, 6, 15, 16, 0)),  # Saturday: counted from Monday 08:00
        (ny(2026, 6, 14, 23, 59), ny(2026, 6, 15, 16, 0)),  # Sunday night
        (ny(2026, 6, 16, 6, 0), ny(2026, 6, 16, 16, 0)),  # Tuesday 06:00: from 08:00
        (ny(2026, 6, 16, 20, 0), ny(2026, 6, 17, 16, 0)),  # Tuesday 20:00: from Wednesday 08:00
        (ny(2026, 6, 16, 17, 0), ny(2026, 6, 17, 16, 0)),  # the minute the office closes
    ],
)
def test_it_counts_a_request_filed_outside_hours_from_the_next_opening(filed, due):
    assert add_working_hours(filed, 8) == due


def test_it_ends_at_closing_time_rather_than_at_the_next_opening():
    assert add_working_hours(ny(2026, 6, 12, 9, 0), 8) == ny(2026, 6, 12, 17, 0)


@pytest.mark.parametrize(
    ("filed", "hours", "due"),
    [
        (ny(2026, 6, 11, 11, 0), 8, ny(2026, 6, 12, 11, 0)),  # Thursday: lunch skipped, then Friday morning
        (ny(2026, 6, 12, 12, 0), 8, ny(2026, 6, 15, 16, 0)),  # Friday ends at 13:00; Monday's lunch skipped
        (ny(2026, 6, 15, 12, 15), 2, ny(2026, 6, 15, 15, 0)),  # filed during lunch: counted from 13:00
        (ny(2026, 6, 12, 14, 0), 1, ny(2026, 6, 15, 9, 0)),  # Friday afternoon is closed
    ],
)
def test_it_skips_the_lunch_break_and_the_short_friday(settings, filed, hours, due):
    settings.PRACTICE_HOURS = SPLIT

    assert add_working_hours(filed, hours) == due
    assert working_time_between(filed, due) == timedelta(hours=hours)


def test_it_counts_a_day_that_only_one_entry_names(settings):
    settings.PRACTICE_HOURS = "Mon-Fri 08:00-17:00, Sat 09:00-12:00"
    assert add_working_hours(FRIDAY_1630, 8) == ny(2026, 6, 15, 12, 30)  # 0.5 + 3 (Saturday) + 4.5


@pytest.mark.parametrize(
    ("before", "friday", "monday"),
    [
        # Spring forward on Sunday 8 March 2026: the weekend before is an ordinary one.
        (ny(2026, 2, 27, 16, 30), ny(2026, 3, 6, 16, 30), ny(2026, 3, 9, 15, 30)),
        # Fall back on Sunday 1 November 2026.
        (ny(2026, 10, 23, 16, 30), ny(2026, 10, 30, 16, 30), ny(2026, 11, 2, 15, 30)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_a_clock_change_weekend_changes_nothing_a_person_would_notice(before, friday, monday):
    ordinary = add_working_hours(before, 8)
    due = add_working_hours(friday, 8)

    assert due == monday
    assert due.astimezone(NEW_YORK).time() == ordinary.astimezone(NEW_YORK).time()
    assert due.utcoffset() != friday.utcoffset()  # the clock did change in between
    assert working_time_between(friday, due) == timedelta(hours=8)


def test_it_counts_the_real_hours_of_a_span_a_clock_change_shortens(settings):
    settings.PRACTICE_HOURS = "Sun 00:00-06:00"
    spring_forward = ny(2026, 3, 8, 0, 0)

    assert working_time_between(spring_forward, ny(2026, 3, 8, 12, 0)) == timedelta(hours=5)
    assert add_working_hours(spring_forward, 5) == ny(2026, 3, 8, 6, 0)


def test_it_counts_backwards_and_between_in_either_order():
    assert add_working_hours(MONDAY_1530, -8) == FRIDAY_1630
    assert working_time_between(MONDAY_1530, FRIDAY_1630) == -timedelta(hours=8)


def test_it_answers_in_the_practice_time_zone_whatever_zone_it_is_given():
    due = add_working_hours(FRIDAY_1630.astimezone(UTC), timedelta(hours=8))
    assert due.tzinfo == NEW_YORK
    assert due == MONDAY_1530


# --- Waiting on the patient -----------------------------------------------------------


@pytest.mark.django_db
def test_waiting_freezes_the_working_hours_still_owed(staff_user, time_machine):
    at(time_machine, ny(2026, 6, 11, 10, 0))  # Thursday
    reset = file_request()
    assert reset.due_at == ny(2026, 6, 15, 16, 0)  # 7 + 9 + 8 working hours
    at(time_machine, ny(2026, 6, 11, 11, 0))
    services.reset_start(reset_id=reset.pk, actor=staff_user)

    at(time_machine, ny(2026, 6, 11, 15, 0))
    waiting = services.reset_wait(reset_id=reset.pk, actor=staff_user)
    # Thursday 2 h, Friday 9 h, Monday 8 h still owed.
    assert waiting.due_owed == timedelta(hours=19)

    # Over the weekend and Monday morning, past the old due time: not overdue.
    at(time_machine, ny(2026, 6, 15, 16, 30))
    assert not resets_overdue().exists()
    at(time_machine, ny(2026, 6, 16, 10, 0))  # Tuesday 10:00, the patient answers
    resumed = services.reset_resume(reset_id=reset.pk, actor=staff_user)

    assert resumed.due_at == ny(2026, 6, 18, 11, 0)  # Tuesday 7 h, Wednesday 9 h, Thursday 3 h
    assert working_time_between(ny(2026, 6, 16, 10, 0), resumed.due_at) == timedelta(hours=19)
    assert resumed.due_owed is None
    assert resumed.waiting_since is None


@pytest.mark.django_db
def test_what_is_owed_stays_frozen_when_a_closed_date_is_added_during_the_wait(staff_user, time_machine, settings):
    at(time_machine, ny(2026, 6, 11, 10, 0))
    reset = file_request()
    services.reset_start(reset_id=reset.pk, actor=staff_user)
    at(time_machine, ny(2026, 6, 11, 15, 0))
    services.reset_wait(reset_id=reset.pk, actor=staff_user)

    settings.PRACTICE_CLOSED_DATES = "2026-06-12"  # Friday, closed after all
    at(time_machine, ny(2026, 6, 15, 10, 0))
    resumed = services.reset_resume(reset_id=reset.pk, actor=staff_user)

    # 19 working hours from Monday 10:00: Monday 7, Tuesday 9, Wednesday 3.
    assert resumed.due_at == ny(2026, 6, 17, 11, 0)


@pytest.mark.django_db
def test_a_request_overdue_when_it_began_to_wait_is_as_overdue_when_it_resumes(staff_user, time_machine):
    at(time_machine, ny(2026, 6, 11, 10, 0))
    reset = file_request()  # due Monday 16:00
    services.reset_start(reset_id=reset.pk, actor=staff_user)
    at(time_machine, ny(2026, 6, 16, 10, 0))  # Tuesday 10:00: 3 working hours late
    assert services.reset_wait(reset_id=reset.pk, actor=staff_user).due_owed == -timedelta(hours=3)

    at(time_machine, ny(2026, 6, 17, 9, 0))
    resumed = services.reset_resume(reset_id=reset.pk, actor=staff_user)

    assert resumed.due_at == ny(2026, 6, 16, 15, 0)  # Wednesday 09:00 less 3 working hours
    assert list(resets_overdue()) == [resumed]


@pytest.mark.django_db
def test_a_request_set_waiting_before_the_owed_time_was_kept_resumes_from_its_due_time(staff_user, time_machine):
    at(time_machine, ny(2026, 6, 15, 9, 0))
    reset = ResetRequestFactory(
        waiting=True,
        submitted_at=ny(2026, 6, 10, 10, 0),
        due_at=ny(2026, 6, 12, 10, 0),
        waiting_since=ny(2026, 6, 11, 16, 0),  # 3 working hours before its due time
    )

    resumed = services.reset_resume(reset_id=reset.pk, actor=staff_user)

    assert resumed.due_at == ny(2026, 6, 15, 12, 0)


@pytest.mark.django_db
def test_a_request_closed_while_waiting_stops_waiting(staff_user, time_machine):
    at(time_machine, ny(2026, 6, 11, 10, 0))
    reset = file_request()
    services.reset_start(reset_id=reset.pk, actor=staff_user)
    services.reset_wait(reset_id=reset.pk, actor=staff_user)
    at(time_machine, ny(2026, 6, 12, 10, 0))

    closed = services.reset_close(reset_id=reset.pk, actor=staff_user, reason="withdrawn")

    assert closed.waiting_since is None
    assert closed.due_owed is None


# --- Overdue, the list and the digest ----------------------------------------------------


@pytest.mark.django_db
def test_a_friday_evening_request_is_not_overdue_on_saturday_evening(time_machine, staff_client):
    at(time_machine, ny(2026, 6, 12, 18, 0))
    reset = file_request()
    assert reset.due_at == ny(2026, 6, 17, 14, 0)  # Monday 9 h, Tuesday 9 h, Wednesday 6 h

    at(time_machine, ny(2026, 6, 13, 20, 0))
    assert not resets_overdue().exists()
    assert services.digest_queue_overdue() is None
    listed = staff_client.get("/admin/requests_app/resetrequest/", {"overdue": "yes"}).context["cl"].result_list
    assert list(listed) == []

    at(time_machine, ny(2026, 6, 15, 8, 30))  # Monday morning: the queue is not red
    assert not resets_overdue().exists()

    at(time_machine, ny(2026, 6, 17, 14, 1))
    assert list(resets_overdue()) == [reset]
    assert services.digest_queue_overdue() is not None


# --- What the patient is promised -------------------------------------------------------


@pytest.mark.django_db
def test_the_confirmation_page_promises_the_working_hours_due_time(client, time_machine, settings):
    settings.RESET_SLA_HOURS = 8
    at(time_machine, FRIDAY_1630)

    page = client.get(f"/reset/submitted/{new_reference()}/").content.decode()

    assert "Monday, June 15, 3:30 PM" in page
    assert 'datetime="2026-06-15T19:30:00Z"' in page
    assert "hours on working days" not in page


@pytest.mark.django_db
def test_the_confirmation_page_works_the_time_out_when_it_is_shown(client, time_machine, settings):
    settings.PRACTICE_CLOSED_DATES = "2026-06-15"
    settings.RESET_SLA_HOURS = 8
    at(time_machine, FRIDAY_1630)

    page = client.get(f"/reset/submitted/{new_reference()}/").content.decode()

    assert "Tuesday, June 16, 3:30 PM" in page


@pytest.mark.django_db
def test_the_acknowledgment_promises_the_working_hours_due_time(time_machine, settings):
    settings.RESET_SLA_HOURS = 8
    at(time_machine, FRIDAY_1630)

    message = build_message(OutboundEmailFactory())

    assert "Monday, June 15, 3:30 PM" in message.body
    assert "Monday, June 15, 3:30 PM" in str(message.alternatives[0][0])
    assert "hours on working days" not in message.body


# --- The settings -----------------------------------------------------------------------


def test_it_parses_split_days_single_days_and_ranges():
    week = parse_practice_hours("mon-thu 08:00-12:00, Mon-Thu 13:00-17:00, FRI 8:00-13:00, Sat 09:00 - 12:00")
    morning, afternoon = week[0]
    assert (morning[0].hour, morning[1].hour, afternoon[0].hour, afternoon[1].hour) == (8, 12, 13, 17)
    assert len(week[3]) == 2
    assert [(s.hour, e.hour) for s, e in week[4]] == [(8, 13)]
    assert [(s.hour, e.hour) for s, e in week[5]] == [(9, 12)]
    assert week[6] == ()


def test_it_joins_spans_that_meet():
    assert parse_practice_hours("Mon 08:00-12:00, Mon 12:00-17:00") == parse_practice_hours("Mon 08:00-17:00")


def test_an_empty_practice_hours_is_the_default():
    assert parse_practice_hours("  ") == parse_practice_hours(OFFICE)


@pytest.mark.parametrize(
    "value",
    [
        "Mon-Fri 08:00-17:00, Fri 12:00-18:00",  # overlaps
        "Mon-Fri 8-5",  # malformed
        "Mon-Fri",  # no time
        "Fri-Mon 08:00-17:00",  # backwards
        "Mon-Fri 17:00-08:00",  # ends before it starts
        "Mon 09:00-09:00",  # empty
        "Mon-Fry 08:00-17:00",  # no such day
        "Mon-Fri 08:00-25:00",  # no such time
        ",",  # no working time at all
    ],
)
def test_it_refuses_bad_practice_hours_naming_the_entry(value):
    with pytest.raises(ImproperlyConfigured, match="PRACTICE_HOURS"):
        parse_practice_hours(value)


@pytest.mark.parametrize("value", ["2026-12-25, 12/26/2026", "2026-13-01", "20261225", "Christmas"])
def test_it_refuses_bad_closed_dates_naming_the_entry(value):
    with pytest.raises(ImproperlyConfigured, match="PRACTICE_CLOSED_DATES"):
        parse_closed_dates(value)


def test_it_reads_closed_dates():
    assert parse_closed_dates("") == frozenset()
    assert parse_closed_dates("2026-12-25, 2027-01-01,") == {date(2026, 12, 25), date(2027, 1, 1)}


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("PRACTICE_HOURS", "Mon-Fri 08:00-17:00, Fri 12:00-18:00", "'Fri 12:00-18:00'"),
        ("PRACTICE_HOURS", "Weekdays 9 to 5", "'Weekdays 9 to 5'"),
        ("PRACTICE_CLOSED_DATES", "2026-12-25, 26/12/2026", "'26/12/2026'"),
    ],
)
def test_it_refuses_to_start_with_bad_working_hours(name, value, named, tmp_path):
    result = run_manage({"DEBUG": "1", name: value}, "check", tmp_path=tmp_path)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line
    assert name in last_line
    assert named in last_line


def test_it_starts_and_counts_in_the_hours_and_closed_dates_it_is_given(tmp_path):
    code = (
        "from datetime import datetime; from zoneinfo import ZoneInfo; "
        "from requests_app.working_hours import add_working_hours; "
        "print(add_working_hours(datetime(2026, 6, 11, 11, 0, tzinfo=ZoneInfo('America/New_York')), 8).isoformat())"
    )
    env = {"DEBUG": "1", "PRACTICE_HOURS": SPLIT, "PRACTICE_CLOSED_DATES": "2026-06-12"}

    result = run_manage(env, "shell", "-c", code, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr
    # Thursday 1 + 4 hours, Friday closed, Monday 08:00-11:00.
    assert result.stdout.strip().splitlines()[-1] == "2026-06-15T11:00:00-04:00"
