"""Working a request through the admin as a member of the staff group: the
moves the workflow allows, refused ones that change nothing, the identity
check before resolving, two staff acting at once, notes, the timeline that
nobody can change, and the audit of who opened the page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from requests_app import services
from requests_app.models import FamilyMember, OutboundEmail, RequestEvent, ResetRequest

from .factories import OutboundEmailFactory, ResetRequestFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

Status = ResetRequest.Status


def make_staff(username: str, group: Group, **names: str) -> Any:
    user = StaffUserFactory(username=username, **names)
    user.groups.add(group)
    return user


def url(rr: ResetRequest, name: str = "change") -> str:
    if name == "change":
        return f"/admin/requests_app/resetrequest/{rr.pk}/change/"
    return f"/admin/requests_app/resetrequest/{rr.pk}/{name}/"


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def status_events(rr: ResetRequest) -> list[tuple[str, str]]:
    return list(rr.events.filter(kind=RequestEvent.Kind.STATUS).values_list("from_status", "to_status"))


# --- The change page ---------------------------------------------------------


def test_it_records_a_view_event_each_time_the_page_is_opened(staff_client, staff):
    rr = ResetRequestFactory()

    staff_client.get(url(rr))
    response = staff_client.get(url(rr))

    assert response.status_code == 200
    views = rr.events.filter(kind=RequestEvent.Kind.VIEWED)
    assert views.count() == 2
    assert {event.actor_id for event in views} == {staff.pk}


def test_it_shows_the_patient_details_and_family_members(staff_client):
    rr = ResetRequestFactory(first_name="Maria", last_name="Lopez", phone="+15552013344")
    FamilyMember.objects.create(reset=rr, first_name="Luis", last_name="Lopez", date_of_birth=None)

    response = staff_client.get(url(rr))

    page = response.content.decode()
    assert "Maria" in page
    assert "+15552013344" in page
    assert rr.email in page
    assert "Luis" in page


def test_it_shows_only_the_buttons_of_the_moves_allowed_from_new(staff_client):
    rr = ResetRequestFactory()

    page = staff_client.get(url(rr)).content.decode()

    assert url(rr, "start") in page
    assert url(rr, "close") in page
    assert url(rr, "resolve") not in page
    assert url(rr, "wait") not in page


def test_it_shows_only_the_buttons_of_the_moves_allowed_from_in_progress(staff_client):
    rr = ResetRequestFactory(in_progress=True)

    page = staff_client.get(url(rr)).content.decode()

    assert url(rr, "wait") in page
    # Before the identity check, resolving is the one form's (verify and resolve).
    assert url(rr, "verify") in page
    assert url(rr, "resolve") not in page
    assert url(rr, "close") in page
    assert url(rr, "start") not in page
    assert url(rr, "resume") not in page


def test_it_shows_no_move_buttons_on_an_ended_request(staff_client):
    rr = ResetRequestFactory(resolved=True)

    page = staff_client.get(url(rr)).content.decode()

    for move in ("start", "wait", "resolve", "close", "assign"):
        assert url(rr, move) not in page


def test_it_saves_nothing_when_the_page_itself_is_posted(staff_client):
    rr = ResetRequestFactory(first_name="Maria")

    response = staff_client.post(url(rr), {"first_name": "Mallory", "status": "resolved"})

    assert response.status_code == 405
    rr.refresh_from_db()
    assert (rr.first_name, rr.status) == ("Maria", Status.NEW)


def test_it_shows_times_in_the_practice_time_zone(staff_client, settings):
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    due = datetime(2099, 1, 15, 17, 0, tzinfo=UTC)
    rr = ResetRequestFactory(due_at=due)

    page = staff_client.get(url(rr)).content.decode()

    assert "Jan 15, 12:00" in page


def test_it_keeps_the_change_page_queries_flat_as_the_timeline_grows(
    staff_client, staff, django_assert_max_num_queries
):
    small = ResetRequestFactory(assignee=staff)
    big = ResetRequestFactory(assignee=staff)
    for number in range(40):
        services.reset_add_note(reset_id=big.pk, actor=staff, text=f"Call {number}")
    for number in range(3):
        FamilyMember.objects.create(reset=big, first_name=f"Kid{number}", last_name="Doe")
        OutboundEmailFactory(reset=big)
    FamilyMember.objects.create(reset=small, first_name="Kid", last_name="Doe")

    with CaptureQueriesContext(connection) as on_small:
        staff_client.get(url(small))
    with django_assert_max_num_queries(len(on_small)):
        response = staff_client.get(url(big))

    assert response.status_code == 200
    assert len(on_small) <= 15


# --- Allowed moves -----------------------------------------------------------


def test_it_starts_a_new_request_and_assigns_it_to_whoever_starts_it(staff_client, staff):
    rr = ResetRequestFactory()

    response = staff_client.post(url(rr, "start"), {"expected_status": "new"})

    assert response.status_code == 302
    assert response["Location"] == url(rr)
    rr.refresh_from_db()
    assert rr.status == Status.IN_PROGRESS
    assert rr.assignee == staff
    assert status_events(rr) == [("new", "in_progress")]
    assert messages_of(response) == [f"{rr.reference} is in progress and assigned to you."]


def test_it_shows_a_form_for_each_move_with_the_status_the_page_showed(staff_client):
    rr = ResetRequestFactory(in_progress=True, identity_checked=True)

    for move in ("wait", "resolve", "close"):
        response = staff_client.get(url(rr, move), {"expected_status": "in_progress"})
        assert response.status_code == 200
        assert b'name="expected_status" value="in_progress"' in response.content


def test_it_marks_a_request_waiting_on_the_patient_with_a_note(staff_client):
    rr = ResetRequestFactory(in_progress=True)

    staff_client.post(url(rr, "wait"), {"expected_status": "in_progress", "note": "Left a voicemail"})

    rr.refresh_from_db()
    assert rr.status == Status.WAITING
    assert rr.waiting_since is not None
    event = rr.events.get(kind=RequestEvent.Kind.STATUS)
    assert (event.to_status, event.message) == ("waiting", "Left a voicemail")


def test_it_moves_a_waiting_request_back_to_in_progress(staff_client):
    rr = ResetRequestFactory(waiting=True)

    response = staff_client.post(url(rr, "resume"), {"expected_status": "waiting"})

    rr.refresh_from_db()
    assert rr.status == Status.IN_PROGRESS
    assert status_events(rr) == [("waiting", "in_progress")]
    assert messages_of(response) == [f"{rr.reference} is back in progress; the due clock runs again."]


def test_it_resolves_a_verified_request_and_emails_the_patient(staff_client, staff, django_capture_on_commit_callbacks):
    rr = ResetRequestFactory(in_progress=True, identity_checked=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            url(rr, "resolve"),
            {"expected_status": "in_progress", "outcome": "reinvited", "note": "Sent a new invitation"},
        )

    rr.refresh_from_db()
    assert (rr.status, rr.outcome, rr.is_open) == (Status.RESOLVED, "reinvited", False)
    assert rr.events.get(kind=RequestEvent.Kind.STATUS).actor == staff
    assert [m.to for m in mail.outbox] == [[rr.email]]
    assert rr.emails.get().kind == OutboundEmail.Kind.RESOLVED
    assert messages_of(response) == [f"{rr.reference} is resolved; the patient is emailed."]


def test_it_asks_for_the_outcome_before_resolving(staff_client):
    rr = ResetRequestFactory(in_progress=True, identity_checked=True)

    response = staff_client.post(url(rr, "resolve"), {"expected_status": "in_progress"})

    assert response.status_code == 200
    assert b"Choose the outcome of the reset." in response.content
    rr.refresh_from_db()
    assert rr.status == Status.IN_PROGRESS


def test_it_closes_a_request_with_a_reason_and_emails_the_patient(staff_client, django_capture_on_commit_callbacks):
    rr = ResetRequestFactory()

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(url(rr, "close"), {"expected_status": "new", "reason": "withdrawn", "note": "Got in"})

    rr.refresh_from_db()
    assert (rr.status, rr.close_reason) == (Status.CLOSED, "withdrawn")
    assert status_events(rr) == [("new", "closed")]
    assert [m.to for m in mail.outbox] == [[rr.email]]


def test_it_tells_staff_that_a_request_closed_as_spam_emails_nobody(staff_client, django_capture_on_commit_callbacks):
    rr = ResetRequestFactory()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url(rr, "close"), {"expected_status": "new", "reason": "spam", "note": ""})

    assert messages_of(response) == [f"{rr.reference} is closed as spam; no email goes to the sender."]
    assert mail.outbox == []


def test_it_assigns_a_request_to_me(staff_client, staff):
    rr = ResetRequestFactory()

    response = staff_client.post(url(rr, "assign"), {"expected_status": "new", "expected_assignee": ""})

    rr.refresh_from_db()
    assert rr.assignee == staff
    assert rr.status == Status.NEW
    assert rr.events.get(kind=RequestEvent.Kind.ASSIGNED).actor == staff
    assert messages_of(response) == [f"{rr.reference} is assigned to you."]


def test_it_resends_the_acknowledgment(staff_client, staff, django_capture_on_commit_callbacks):
    rr = ResetRequestFactory()

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(url(rr, "resend"))

    assert [m.to for m in mail.outbox] == [[rr.email]]
    assert rr.emails.get().kind == OutboundEmail.Kind.ACKNOWLEDGMENT
    assert rr.events.filter(kind=RequestEvent.Kind.EMAIL_QUEUED, actor=staff).exists()


# --- Identity check and notes ----------------------------------------------------


def test_it_records_the_identity_check(staff_client, staff):
    rr = ResetRequestFactory(in_progress=True)

    response = staff_client.post(url(rr, "identity"), {"dob": "on", "email": "on"})

    assert response["Location"] == url(rr)
    rr.refresh_from_db()
    assert (rr.identity_dob_matched, rr.identity_phone_matched, rr.identity_email_matched) == (True, False, True)
    assert rr.identity_verified_by == staff
    assert rr.identity_verified_at is not None
    assert rr.events.get(kind=RequestEvent.Kind.IDENTITY).message == "Matched the chart: date of birth, email"


def test_it_refuses_an_identity_check_without_the_date_of_birth_and_one_more(staff_client):
    rr = ResetRequestFactory(in_progress=True)

    response = staff_client.post(url(rr, "identity"), {"phone": "on", "email": "on"})

    rr.refresh_from_db()
    assert rr.identity_verified_at is None
    assert "date of birth and at least one more identifier" in messages_of(response)[0]


def test_it_adds_an_internal_note_to_the_timeline(staff_client, staff):
    rr = ResetRequestFactory()

    response = staff_client.post(url(rr, "note"), {"text": "  Called, no answer  "})

    note = rr.events.get(kind=RequestEvent.Kind.NOTE)
    assert (note.message, note.actor) == ("Called, no answer", staff)
    assert messages_of(response) == ["Note added to the timeline."]


def test_it_refuses_an_empty_note(staff_client):
    rr = ResetRequestFactory()

    response = staff_client.post(url(rr, "note"), {"text": "   "})

    assert not rr.events.filter(kind=RequestEvent.Kind.NOTE).exists()
    assert messages_of(response) == ["This field is required."]


# --- Refused moves ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("traits", "move", "data"),
    [
        ({}, "wait", {"expected_status": "new"}),
        ({}, "resolve", {"expected_status": "new", "outcome": "reinvited"}),
        ({"waiting": True, "identity_checked": True}, "resolve", {"expected_status": "waiting", "outcome": "other"}),
        ({"waiting": True}, "wait", {"expected_status": "waiting"}),
        ({"in_progress": True}, "start", {"expected_status": "in_progress"}),
        ({"resolved": True}, "start", {"expected_status": "resolved"}),
        ({"resolved": True}, "close", {"expected_status": "resolved", "reason": "spam"}),
        ({"closed": True}, "close", {"expected_status": "closed", "reason": "duplicate"}),
        ({"closed": True}, "wait", {"expected_status": "closed"}),
    ],
)
def test_it_refuses_a_move_the_workflow_does_not_allow_and_changes_nothing(staff_client, traits, move, data):
    rr = ResetRequestFactory(**traits)
    before = ResetRequest.objects.values().get(pk=rr.pk)

    response = staff_client.post(url(rr, move), data)

    assert response.status_code == 302
    assert "cannot go from" in messages_of(response)[0]
    assert ResetRequest.objects.values().get(pk=rr.pk) == before
    assert not rr.events.filter(kind=RequestEvent.Kind.STATUS).exists()
    assert not rr.emails.exists()


def test_it_sends_a_forbidden_move_page_back_with_a_message(staff_client):
    rr = ResetRequestFactory()

    response = staff_client.get(url(rr, "resolve"))

    assert response["Location"] == url(rr)
    assert messages_of(response) == [f"{rr.reference} cannot go from new to resolved."]


def test_it_refuses_to_resolve_before_the_identity_check(staff_client):
    rr = ResetRequestFactory(in_progress=True)

    response = staff_client.post(url(rr, "resolve"), {"expected_status": "in_progress", "outcome": "reinvited"})

    rr.refresh_from_db()
    assert rr.status == Status.IN_PROGRESS
    assert rr.outcome == ""
    assert messages_of(response) == [f"Record the identity check of {rr.reference} before resolving it."]
    assert not rr.emails.exists()


def test_it_refuses_the_resolve_page_before_the_identity_check(staff_client):
    rr = ResetRequestFactory(in_progress=True)

    response = staff_client.get(url(rr, "resolve"), {"expected_status": "in_progress"})

    assert response["Location"] == url(rr)
    assert messages_of(response) == [f"Record the identity check of {rr.reference} before resolving it."]


# --- Two staff at once -------------------------------------------------------------


def test_it_tells_the_slower_of_two_staff_that_someone_else_changed_the_request(
    staff_client, staff_group, django_capture_on_commit_callbacks
):
    rr = ResetRequestFactory()
    other = Client()
    other.force_login(make_staff("bob", staff_group))

    # A opens the page while the request is new ...
    page = staff_client.get(url(rr)).content.decode()
    assert 'name="expected_status" value="new"' in page
    # ... B starts it ...
    other.post(url(rr, "start"), {"expected_status": "new"})
    # ... and A, still looking at "new", closes it.
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url(rr, "close"), {"expected_status": "new", "reason": "duplicate"})

    assert "changed by someone else" in messages_of(response)[0]
    rr.refresh_from_db()
    assert (rr.status, rr.close_reason) == (Status.IN_PROGRESS, "")
    assert status_events(rr) == [("new", "in_progress")]
    assert mail.outbox == []


def test_it_sends_a_move_page_opened_from_a_stale_page_back_with_a_message(staff_client, staff_group):
    rr = ResetRequestFactory()
    services.reset_start(reset_id=rr.pk, actor=make_staff("bob", staff_group))

    response = staff_client.get(url(rr, "close"), {"expected_status": "new"})

    assert response["Location"] == url(rr)
    assert "changed by someone else" in messages_of(response)[0]


def test_it_refuses_to_take_a_request_someone_else_took_meanwhile(staff_client, staff_group):
    rr = ResetRequestFactory()
    bob = make_staff("bob", staff_group)
    services.reset_assign(reset_id=rr.pk, assignee=bob, actor=bob)

    response = staff_client.post(url(rr, "assign"), {"expected_status": "new", "expected_assignee": ""})

    rr.refresh_from_db()
    assert rr.assignee == bob
    assert "changed by someone else" in messages_of(response)[0]


# --- Bulk actions on the list --------------------------------------------------------


def run_action(client: Client, action: str, *requests: ResetRequest, **extra: str) -> Any:
    return client.post(
        "/admin/requests_app/resetrequest/",
        {
            "action": action,
            "_selected_action": [rr.pk for rr in requests],
            "index": "0",
            "select_across": "0",
            **extra,
        },
    )


def test_it_starts_requests_in_bulk_and_reports_each_refusal(staff_client):
    fresh = ResetRequestFactory()
    done = ResetRequestFactory(resolved=True)

    response = run_action(staff_client, "start", fresh, done)

    fresh.refresh_from_db()
    done.refresh_from_db()
    assert (fresh.status, done.status) == (Status.IN_PROGRESS, Status.RESOLVED)
    assert messages_of(response) == [
        f"{done.reference} cannot go from resolved to in progress.",
        f"Started 1 request: {fresh.reference}.",
    ]


def test_it_assigns_requests_to_me_in_bulk_but_not_one_someone_else_holds(staff_client, staff, staff_group):
    mine = ResetRequestFactory()
    bobs = ResetRequestFactory(assignee=make_staff("bob", staff_group))

    response = run_action(staff_client, "assign_to_me", mine, bobs)

    mine.refresh_from_db()
    bobs.refresh_from_db()
    assert mine.assignee == staff
    assert bobs.assignee.username == "bob"
    assert f"{bobs.reference}: assigned to someone else; open it to take it over." in messages_of(response)


@pytest.mark.parametrize("action", ["close_as_duplicate", "close_as_spam"])
def test_it_asks_before_a_bulk_close_naming_each_request_and_changes_nothing(staff_client, action):
    first, second = ResetRequestFactory(), ResetRequestFactory(in_progress=True)

    response = run_action(staff_client, action, first, second)

    assert response.status_code == 200
    page = response.content.decode()
    assert first.reference in page and second.reference in page
    assert first.patient_name in page
    assert "No, go back" in page
    assert set(ResetRequest.objects.values_list("status", flat=True)) == {"new", "in_progress"}
    assert mail.outbox == []


def test_it_closes_requests_as_duplicates_in_bulk_once_confirmed_and_emails_the_patients(
    staff_client, django_capture_on_commit_callbacks
):
    first, second = ResetRequestFactory(), ResetRequestFactory(in_progress=True)

    with django_capture_on_commit_callbacks(execute=True):
        run_action(staff_client, "close_as_duplicate", first, second, confirmed="yes")

    assert set(ResetRequest.objects.values_list("status", "close_reason")) == {("closed", "duplicate")}
    assert sorted(m.to[0] for m in mail.outbox) == sorted([first.email, second.email])


def test_it_closes_requests_as_spam_in_bulk_once_confirmed_without_emailing(
    staff_client, django_capture_on_commit_callbacks
):
    rr = ResetRequestFactory()

    with django_capture_on_commit_callbacks(execute=True):
        run_action(staff_client, "close_as_spam", rr, confirmed="yes")

    rr.refresh_from_db()
    assert (rr.status, rr.close_reason) == (Status.CLOSED, "spam")
    assert mail.outbox == []


def test_it_refuses_a_bulk_action_on_too_many_requests(staff_client, monkeypatch):
    monkeypatch.setattr("requests_app.admin.queue.BULK_LIMIT", 2)
    requests = ResetRequestFactory.create_batch(3)

    response = run_action(staff_client, "start", *requests)

    assert set(ResetRequest.objects.values_list("status", flat=True)) == {"new"}
    assert messages_of(response) == ["Select at most 2 requests at a time; nothing was changed."]


# --- The timeline: read-only and append-only ---------------------------------------


def test_it_shows_the_timeline_oldest_first_with_who_and_what(staff_client, staff):
    rr = ResetRequestFactory()
    services.reset_start(reset_id=rr.pk, actor=staff)
    services.reset_add_note(reset_id=rr.pk, actor=staff, text="Called the patient")

    page = staff_client.get(url(rr)).content.decode()

    timeline = page[page.index('id="timeline"') :]
    assert timeline.index("New → In progress") < timeline.index("Called the patient") < timeline.index("Viewed")
    assert "Nora Nurse" in timeline


def test_it_lists_the_requests_emails(staff_client):
    rr = ResetRequestFactory()
    OutboundEmailFactory(reset=rr, state="failed", attempts=6, last_error="550 mailbox unavailable")

    page = staff_client.get(url(rr)).content.decode()

    emails = page[page.index('id="emails"') :]
    assert "Acknowledgment" in emails
    assert "550 mailbox unavailable" in emails


@pytest.mark.parametrize(
    "path",
    [
        "/admin/requests_app/requestevent/",
        "/admin/requests_app/requestevent/add/",
        "/admin/requests_app/requestevent/{pk}/change/",
        "/admin/requests_app/requestevent/{pk}/delete/",
    ],
)
def test_it_offers_no_way_to_add_change_or_delete_events_even_to_a_superuser(client, superuser, path):
    rr = ResetRequestFactory()
    services.reset_add_note(reset_id=rr.pk, actor=superuser, text="Original note")
    event = rr.events.get()
    client.force_login(superuser)

    response = client.post(path.format(pk=event.pk), {"post": "yes", "message": "Rewritten", "kind": "note"})

    assert response.status_code in (403, 404)
    assert list(rr.events.values_list("pk", "message")) == [(event.pk, "Original note")]


def test_it_keeps_requests_and_their_timeline_from_being_deleted_by_a_superuser(client, superuser):
    rr = ResetRequestFactory()
    services.reset_add_note(reset_id=rr.pk, actor=superuser, text="Keep me")
    client.force_login(superuser)

    delete_page = client.post(f"/admin/requests_app/resetrequest/{rr.pk}/delete/", {"post": "yes"})
    bulk = run_action(client, "delete_selected", rr)

    assert delete_page.status_code == 403
    assert bulk.status_code in (200, 302)
    assert ResetRequest.objects.filter(pk=rr.pk).exists()
    assert rr.events.count() == 1
