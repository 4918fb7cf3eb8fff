"""The queue staff open every morning: its columns and overdue mark, filters,
search, order, and a page cost that does not grow with the table."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from requests_app.models import ResetRequest

from .factories import OutboundEmailFactory, ResetRequestFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/requests_app/resetrequest/"


def listed(response: Any) -> list[str]:
    """References on the page, in the order shown."""
    return [obj.reference for obj in response.context["cl"].result_list]


def overdue(**fields: Any) -> ResetRequest:
    submitted = timezone.now() - timedelta(days=2)
    return ResetRequestFactory(submitted_at=submitted, due_at=submitted + timedelta(hours=24), **fields)


# --- Columns ----------------------------------------------------------------------


def test_it_shows_reference_patient_reason_status_age_due_and_assignee(staff_client, staff):
    submitted = timezone.now() - timedelta(days=3, hours=4, minutes=30)
    rr = ResetRequestFactory(
        first_name="Maria",
        last_name="Lopez",
        reason="security_code",
        submitted_at=submitted,
        due_at=timezone.now() + timedelta(days=400),
        in_progress=True,
        assignee=staff,
    )

    response = staff_client.get(LIST)

    row = response.content.decode().split(rr.reference, 1)[1].split("</tr>", 1)[0]
    assert "Maria Lopez" in row
    assert "Security code" in row
    assert "In progress" in row
    assert "3 d 4 h" in row
    assert timezone.localtime(rr.due_at).strftime("%b") in row
    assert "Nora Nurse" in row


def test_it_marks_an_overdue_request(staff_client):
    rr = overdue()

    response = staff_client.get(LIST)

    row = response.content.decode().split(rr.reference, 1)[1].split("</tr>", 1)[0]
    assert 'class="rr-badge rr-overdue"' in row
    assert ">Overdue<" in row


def test_it_does_not_mark_a_request_that_is_waiting_or_not_yet_due(staff_client):
    overdue(waiting=True)
    ResetRequestFactory()

    response = staff_client.get(LIST)

    assert b"rr-overdue" not in response.content


def test_it_lists_open_requests_first_and_the_oldest_first(staff_client):
    now = timezone.now()
    ended_old = ResetRequestFactory(closed=True, submitted_at=now - timedelta(days=9))
    open_new = ResetRequestFactory(submitted_at=now - timedelta(hours=1))
    open_old = ResetRequestFactory(in_progress=True, submitted_at=now - timedelta(days=3))

    response = staff_client.get(LIST)

    assert listed(response) == [open_old.reference, open_new.reference, ended_old.reference]


# --- Filters -----------------------------------------------------------------------


def test_it_filters_by_status(staff_client):
    waiting = ResetRequestFactory(waiting=True)
    ResetRequestFactory()

    response = staff_client.get(LIST, {"status__exact": "waiting"})

    assert listed(response) == [waiting.reference]


def test_it_filters_by_reason(staff_client):
    shared = ResetRequestFactory(reason="shared_account")
    ResetRequestFactory(reason="link_expired")

    response = staff_client.get(LIST, {"reason__exact": "shared_account"})

    assert listed(response) == [shared.reference]


def test_it_filters_overdue_requests(staff_client):
    late = overdue()
    overdue(waiting=True)
    ResetRequestFactory()

    response = staff_client.get(LIST, {"overdue": "yes"})

    assert listed(response) == [late.reference]


def test_it_filters_requests_that_are_not_overdue(staff_client):
    overdue()
    waiting = overdue(waiting=True)
    fresh = ResetRequestFactory()

    response = staff_client.get(LIST, {"overdue": "no"})

    assert sorted(listed(response)) == sorted([waiting.reference, fresh.reference])


def test_it_filters_the_requests_assigned_to_me(staff_client, staff):
    mine = ResetRequestFactory(assignee=staff)
    ResetRequestFactory(assignee=StaffUserFactory(username="bob"))
    ResetRequestFactory()

    response = staff_client.get(LIST, {"assigned": "me"})

    assert listed(response) == [mine.reference]


def test_it_filters_unassigned_requests(staff_client, staff):
    nobodys = ResetRequestFactory()
    ResetRequestFactory(assignee=staff)

    response = staff_client.get(LIST, {"assigned": "nobody"})

    assert listed(response) == [nobodys.reference]


# --- Search ------------------------------------------------------------------------


def test_it_finds_a_request_by_its_reference_typed_loosely(staff_client):
    rr = ResetRequestFactory(reference="K7QM-3XTD")
    ResetRequestFactory(reference="K7QN-3XTD")

    response = staff_client.get(LIST, {"q": " k7qm 3xtd "})

    assert listed(response) == [rr.reference]


def test_it_finds_requests_by_the_start_of_a_reference(staff_client):
    rr = ResetRequestFactory(reference="K7QM-3XTD")
    ResetRequestFactory(reference="K7QN-3XTD")

    response = staff_client.get(LIST, {"q": "k7qm"})

    assert listed(response) == [rr.reference]


def test_it_finds_a_request_by_the_patients_name(staff_client):
    rr = ResetRequestFactory(first_name="Maria", last_name="Lopez")
    ResetRequestFactory(first_name="Maria", last_name="Smith")
    ResetRequestFactory(first_name="Luis", last_name="Lopez")

    response = staff_client.get(LIST, {"q": "maria lop"})

    assert listed(response) == [rr.reference]


def test_it_finds_a_request_by_email_in_any_case(staff_client):
    rr = ResetRequestFactory(email="maria.lopez@example.com")
    ResetRequestFactory(email="maria.lopez@example.org")

    response = staff_client.get(LIST, {"q": "Maria.Lopez@Example.com"})

    assert listed(response) == [rr.reference]


@pytest.mark.parametrize("typed", ["555-201-3344", "(555) 201 3344", "+1 555 201 3344", "5552013344"])
def test_it_finds_a_request_by_phone_in_any_format(staff_client, typed):
    rr = ResetRequestFactory(phone="+15552013344")
    ResetRequestFactory(phone="+15552019999")

    response = staff_client.get(LIST, {"q": typed})

    assert listed(response) == [rr.reference]


# --- What the list does not offer -------------------------------------------------------


def test_it_offers_no_add_and_no_delete(staff_client):
    ResetRequestFactory()

    response = staff_client.get(LIST)

    actions = [value for value, _ in response.context["action_form"].fields["action"].choices]
    assert actions == ["", "assign_to_me", "start", "close_as_duplicate", "close_as_spam"]
    assert staff_client.get(LIST + "add/").status_code == 403


# --- Cost ----------------------------------------------------------------------------------


def make_queue(count: int) -> None:
    """Requests of every status, most of them assigned, each to its own
    staff member: a per-row query for the assignee would show."""
    traits = [{}, {"in_progress": True}, {"waiting": True}, {"resolved": True}, {"closed": True}]
    for number in range(count):
        assignee = StaffUserFactory(username=f"staff-{count}-{number}") if number % 4 else None
        ResetRequestFactory(assignee=assignee, **traits[number % len(traits)])


def test_it_lists_ten_or_fifty_requests_with_the_same_number_of_queries(staff_client, django_assert_max_num_queries):
    make_queue(10)
    with CaptureQueriesContext(connection) as ten:
        assert staff_client.get(LIST).status_code == 200
    make_queue(40)

    with django_assert_max_num_queries(len(ten)):
        response = staff_client.get(LIST)

    assert len(listed(response)) == 50
    assert len(ten) <= 10


def test_it_does_not_count_past_its_limit(staff_client, monkeypatch):
    monkeypatch.setattr("requests_app.admin.paginator.CappedCountPaginator.LIMIT", 5)
    make_queue(8)

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(LIST)

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1
    assert "LIMIT 6" in counts[0]
    assert b"More than 5 reset requests" in response.content


# --- The outbox --------------------------------------------------------------------------


def test_it_lists_emails_read_only_with_a_state_filter(staff_client):
    failed = OutboundEmailFactory(state="failed", last_error="550 no such user")
    OutboundEmailFactory(state="sent")

    response = staff_client.get("/admin/requests_app/outboundemail/", {"state__exact": "failed"})

    assert [email.pk for email in response.context["cl"].result_list] == [failed.pk]
    assert b"550 no such user" in response.content
    assert staff_client.get("/admin/requests_app/outboundemail/add/").status_code == 403
    assert staff_client.post(f"/admin/requests_app/outboundemail/{failed.pk}/change/", {}).status_code == 403


# --- CSV export ----------------------------------------------------------------------------


def exported(response: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_it_exports_the_filtered_list_as_csv_without_dates_of_birth(staff_client):
    waiting = ResetRequestFactory(waiting=True, first_name="Maria", date_of_birth=date(1980, 4, 23))
    ResetRequestFactory()

    response = staff_client.get(LIST + "export.csv", {"status__exact": "waiting"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = exported(response)
    assert "date_of_birth" not in rows[0]
    assert [row[0] for row in rows[1:]] == [waiting.reference]
    assert "Maria" in rows[1]
    assert not any("1980" in cell for cell in rows[1])


def test_it_keeps_a_formula_typed_by_a_patient_as_text_in_the_export(staff_client):
    ResetRequestFactory(first_name='=HYPERLINK("http://evil")', phone="+15552013344")

    rows = exported(staff_client.get(LIST + "export.csv"))

    record = dict(zip(rows[0], rows[1], strict=True))
    assert record["first_name"] == '\'=HYPERLINK("http://evil")'
    assert record["phone"] == "+15552013344"


def test_due_soon_counts_working_hours_not_the_weekend(staff_client, time_machine, settings):
    """Friday 16:30 in the practice's default hours (Mon-Fri 08:00-17:00):
    a request due Monday 09:00 is 1.5 working hours away, so due soon; one
    due Tuesday 09:00 is 10.5 working hours away, so not."""
    settings.PRACTICE_HOURS = "Mon-Fri 08:00-17:00"
    zone = ZoneInfo(settings.PRACTICE_TIME_ZONE)
    time_machine.move_to(datetime(2026, 6, 12, 16, 30, tzinfo=zone), tick=False)  # a Friday
    monday = ResetRequestFactory(due_at=datetime(2026, 6, 15, 9, 0, tzinfo=zone))
    tuesday = ResetRequestFactory(due_at=datetime(2026, 6, 16, 9, 0, tzinfo=zone))

    page = staff_client.get(LIST).content.decode()

    rows = {rr.reference: page[page.index(rr.reference) :][:1500] for rr in (monday, tuesday)}
    assert "Due soon" in rows[monday.reference].split("</tr>")[0]
    assert "Due soon" not in rows[tuesday.reference].split("</tr>")[0]
