"""The status workflow, enforced in the service layer for every caller:
the allowed moves succeed and write a STATUS event with the actor; every
other move raises TransitionNotAllowed and changes nothing. The database
backs the rules up with constraints, and the timeline is append-only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from requests_app import exceptions, services
from requests_app.exceptions import ConcurrentChange, IdentityNotVerified, TransitionNotAllowed, WorkflowError
from requests_app.models import AppendOnlyError, RequestEvent, ResetRequest
from requests_app.working_hours import add_working_hours, working_time_between

from .factories import ResetRequestFactory
from .support.snapshots import snapshot

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def start(request: ResetRequest, actor: Any) -> ResetRequest:
    return services.reset_start(reset_id=request.pk, actor=actor)


def wait(request: ResetRequest, actor: Any) -> ResetRequest:
    return services.reset_wait(reset_id=request.pk, actor=actor)


def resume(request: ResetRequest, actor: Any) -> ResetRequest:
    return services.reset_resume(reset_id=request.pk, actor=actor)


def resolve(request: ResetRequest, actor: Any) -> ResetRequest:
    return services.reset_resolve(reset_id=request.pk, actor=actor, outcome="reinvited")


def close(request: ResetRequest, actor: Any) -> ResetRequest:
    return services.reset_close(reset_id=request.pk, actor=actor, reason="withdrawn")


def reopen(request: ResetRequest, actor: Any) -> ResetRequest:
    return services.reset_reopen(reset_id=request.pk, actor=actor, reason="still_no_access")


# Each staff action, by the name the table of moves keys it by.
ACTIONS: dict[str, Callable[[ResetRequest, Any], ResetRequest]] = {
    "start": start,
    "wait": wait,
    "resume": resume,
    "resolve": resolve,
    "close": close,
    "reopen": reopen,
}
STATUS_TRAITS = {
    "new": {"identity_checked": True},
    "in_progress": {"in_progress": True, "identity_checked": True},
    "waiting": {"waiting": True, "identity_checked": True},
    "resolved": {"resolved": True},
    "closed": {"closed": True},
}
# (from, action): where it leads. Three actions lead to in progress, each
# from its own statuses only.
ALLOWED = {
    ("new", "start"): "in_progress",
    ("new", "close"): "closed",
    ("in_progress", "wait"): "waiting",
    ("in_progress", "resolve"): "resolved",
    ("in_progress", "close"): "closed",
    ("waiting", "resume"): "in_progress",
    ("waiting", "close"): "closed",
    ("resolved", "reopen"): "in_progress",
    ("closed", "reopen"): "in_progress",
}
FORBIDDEN = sorted(
    (source, action) for source in STATUS_TRAITS for action in ACTIONS if (source, action) not in ALLOWED
)


# --- Allowed moves ------------------------------------------------------------------


@pytest.mark.parametrize(("source", "action"), sorted(ALLOWED))
def test_it_makes_each_allowed_move_and_records_it_with_the_actor(staff_user, source, action):
    request = ResetRequestFactory(**STATUS_TRAITS[source])
    target = ALLOWED[source, action]

    moved = ACTIONS[action](request, staff_user)

    assert moved.status == target
    stored = ResetRequest.objects.get(pk=request.pk)
    assert stored.status == target
    assert stored.is_open is (target in ("new", "in_progress", "waiting"))
    event = RequestEvent.objects.get(reset=request, kind=RequestEvent.Kind.STATUS)
    assert (event.from_status, event.to_status, event.actor) == (source, target, staff_user)
    assert event.created_at == NOW


def test_it_records_the_outcome_and_end_of_a_resolved_request(staff_user):
    request = ResetRequestFactory(in_progress=True, identity_checked=True)

    services.reset_resolve(reset_id=request.pk, actor=staff_user, outcome="email_corrected", note="New address")

    stored = ResetRequest.objects.get(pk=request.pk)
    assert stored.outcome == "email_corrected"
    assert stored.ended_at == NOW
    assert stored.events.get(kind=RequestEvent.Kind.STATUS).message == "New address"
    assert list(stored.emails.values_list("kind", "to")) == [("resolved", stored.email)]


def test_it_records_the_reason_and_end_of_a_closed_request(staff_user):
    request = ResetRequestFactory()

    services.reset_close(reset_id=request.pk, actor=staff_user, reason="unverified")

    stored = ResetRequest.objects.get(pk=request.pk)
    assert stored.close_reason == "unverified"
    assert stored.ended_at == NOW
    assert list(stored.emails.values_list("kind", flat=True)) == ["closed"]


def test_it_assigns_an_unassigned_request_to_the_one_who_starts_it(staff_user):
    request = ResetRequestFactory()

    start(request, staff_user)

    assert ResetRequest.objects.get(pk=request.pk).assignee == staff_user
    assert RequestEvent.objects.get(reset=request, kind=RequestEvent.Kind.ASSIGNED).actor == staff_user


def test_it_keeps_the_assignee_when_someone_else_starts_the_request(staff_user, superuser):
    request = ResetRequestFactory(assignee=staff_user)

    start(request, superuser)

    assert ResetRequest.objects.get(pk=request.pk).assignee == staff_user
    assert not RequestEvent.objects.filter(reset=request, kind=RequestEvent.Kind.ASSIGNED).exists()


# --- Forbidden moves ----------------------------------------------------------------


@pytest.mark.parametrize(("source", "action"), FORBIDDEN)
def test_it_refuses_every_other_move_and_changes_nothing(staff_user, source, action):
    request = ResetRequestFactory(**STATUS_TRAITS[source])
    before = snapshot(request)

    with pytest.raises(TransitionNotAllowed):
        ACTIONS[action](request, staff_user)

    assert snapshot(request) == before


@pytest.mark.parametrize("traits", [{"resolved": True}, {"closed": True}])
@pytest.mark.parametrize("action", ["start", "resume"])
def test_it_brings_an_ended_request_back_only_by_reopening_it(staff_user, traits, action):
    request = ResetRequestFactory(**traits)

    with pytest.raises(TransitionNotAllowed, match="cannot go from"):
        ACTIONS[action](request, staff_user)

    assert reopen(request, staff_user).status == "in_progress"


def test_it_resumes_a_waiting_request_only_by_resume_not_start(staff_user):
    request = ResetRequestFactory(waiting=True)

    with pytest.raises(TransitionNotAllowed, match="cannot go from waiting on patient to in progress"):
        start(request, staff_user)

    assert resume(request, staff_user).status == "in_progress"


@pytest.mark.parametrize("source", ["new", "in_progress", "waiting"])
def test_it_says_an_open_request_cannot_be_reopened(staff_user, source):
    request = ResetRequestFactory(**STATUS_TRAITS[source])

    with pytest.raises(TransitionNotAllowed) as refused:
        reopen(request, staff_user)

    assert str(refused.value).startswith(f"{request.reference} is still open (")
    assert str(refused.value).endswith("only a resolved or closed request can be reopened.")


def test_it_refuses_to_resolve_without_the_identity_check(staff_user):
    request = ResetRequestFactory(in_progress=True)
    before = snapshot(request)

    with pytest.raises(IdentityNotVerified):
        resolve(request, staff_user)

    assert snapshot(request) == before


@pytest.mark.parametrize("outcome", ["", "fixed", "REINVITED", None])
def test_it_refuses_to_resolve_without_a_known_outcome(staff_user, outcome):
    request = ResetRequestFactory(in_progress=True, identity_checked=True)
    before = snapshot(request)

    with pytest.raises(WorkflowError):
        services.reset_resolve(reset_id=request.pk, actor=staff_user, outcome=outcome)

    assert snapshot(request) == before


@pytest.mark.parametrize("reason", ["", "bored", "SPAM", None])
def test_it_refuses_to_close_without_a_known_reason(staff_user, reason):
    request = ResetRequestFactory()
    before = snapshot(request)

    with pytest.raises(WorkflowError):
        services.reset_close(reset_id=request.pk, actor=staff_user, reason=reason)

    assert snapshot(request) == before


# --- The identity check ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("dob", "phone", "email"),
    [(True, True, False), (True, False, True), (True, True, True)],
)
def test_it_records_an_identity_check_of_the_date_of_birth_and_one_more(staff_user, dob, phone, email):
    request = ResetRequestFactory(in_progress=True)

    services.reset_record_identity_check(reset_id=request.pk, actor=staff_user, dob=dob, phone=phone, email=email)

    stored = ResetRequest.objects.get(pk=request.pk)
    assert (stored.identity_dob_matched, stored.identity_phone_matched, stored.identity_email_matched) == (
        dob,
        phone,
        email,
    )
    assert stored.identity_verified_by == staff_user
    assert stored.identity_verified_at == NOW
    assert RequestEvent.objects.get(reset=request, kind=RequestEvent.Kind.IDENTITY).actor == staff_user
    # …and now it can be resolved.
    assert resolve(stored, staff_user).status == "resolved"


@pytest.mark.parametrize(
    ("dob", "phone", "email"),
    [(True, False, False), (False, True, True), (False, True, False), (False, False, False)],
)
def test_it_refuses_an_identity_check_without_the_date_of_birth_and_one_more(staff_user, dob, phone, email):
    request = ResetRequestFactory(in_progress=True)
    before = snapshot(request)

    with pytest.raises(IdentityNotVerified):
        services.reset_record_identity_check(reset_id=request.pk, actor=staff_user, dob=dob, phone=phone, email=email)

    assert snapshot(request) == before


@pytest.mark.parametrize("traits", [{"resolved": True}, {"closed": True}])
def test_it_refuses_an_identity_check_on_an_ended_request(staff_user, traits):
    request = ResetRequestFactory(**traits)
    before = snapshot(request)

    with pytest.raises(TransitionNotAllowed):
        services.reset_record_identity_check(reset_id=request.pk, actor=staff_user, dob=True, phone=True, email=True)

    assert snapshot(request) == before


# --- The due clock ------------------------------------------------------------------------


def test_it_sets_the_due_time_reset_sla_working_hours_after_submission(submit, form_data, settings):
    settings.RESET_SLA_HOURS = 8
    settings.PRACTICE_HOURS = "Mon-Fri 08:00-17:00"
    settings.PRACTICE_TIME_ZONE = "America/New_York"

    submit(form_data())

    # NOW is Monday 10:00 in New York: 7 working hours that day, 1 on Tuesday.
    assert ResetRequest.objects.get().due_at == datetime(2026, 6, 16, 13, 0, tzinfo=UTC)


def test_it_tells_staff_of_a_new_request_when_it_is_due_in_working_hours(submit, form_data, settings):
    settings.RESET_SLA_HOURS = 8
    settings.PRACTICE_HOURS = "Mon-Fri 08:00-17:00"
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    settings.STAFF_NOTIFY_EMAIL = "frontdesk@clinic.example"

    submit(form_data())

    [notice] = [m for m in mail.outbox if m.to == ["frontdesk@clinic.example"]]
    due = ResetRequest.objects.get().due_at.astimezone(ZoneInfo("America/New_York"))
    shown = f"{due:%a %b} {due.day}, {due:%H:%M} (8 working hours)"
    # Monday 10:00 in New York, plus 8 working hours: Tuesday 09:00.
    assert shown == "Tue Jun 16, 09:00 (8 working hours)"
    assert f"Due by: {shown}" in notice.body
    [(html, _)] = notice.alternatives
    assert f"<strong>Due by:</strong> {shown}" in html
    assert "Due within" not in notice.body + html


def test_it_pauses_the_due_clock_while_waiting_on_the_patient(staff_user, time_machine):
    request = ResetRequestFactory(in_progress=True)
    due = request.due_at

    wait(request, staff_user)
    assert ResetRequest.objects.get(pk=request.pk).waiting_since == NOW
    time_machine.shift(timedelta(hours=5))
    resume(request, staff_user)

    stored = ResetRequest.objects.get(pk=request.pk)
    assert stored.due_at == due + timedelta(hours=5)
    assert stored.waiting_since is None
    assert stored.due_owed is None


def test_it_resumes_with_the_working_time_owed_when_the_wait_began(staff_user, time_machine, settings):
    settings.PRACTICE_HOURS = "Mon-Fri 08:00-17:00"
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    request = ResetRequestFactory(in_progress=True)
    # NOW is Monday 10:00 in New York; the factory's due time, Tuesday 10:00.
    owed = working_time_between(NOW, request.due_at)
    assert owed == timedelta(hours=9)

    wait(request, staff_user)
    # The patient calls back on Thursday at 16:00: one hour left that day.
    time_machine.move_to(datetime(2026, 6, 18, 20, 0, tzinfo=UTC), tick=False)
    resume(request, staff_user)

    due = ResetRequest.objects.get(pk=request.pk).due_at
    assert due == add_working_hours(timezone.now(), owed)
    assert due == datetime(2026, 6, 19, 20, 0, tzinfo=UTC)  # Friday 16:00 in New York


def test_it_adds_up_every_wait(staff_user, time_machine):
    request = ResetRequestFactory(in_progress=True)
    due = request.due_at

    wait(request, staff_user)
    time_machine.shift(timedelta(hours=2))
    resume(request, staff_user)
    time_machine.shift(timedelta(hours=1))  # working on it: the clock runs
    wait(request, staff_user)
    time_machine.shift(timedelta(hours=3))
    resume(request, staff_user)

    assert ResetRequest.objects.get(pk=request.pk).due_at == due + timedelta(hours=5)


def test_it_stops_the_wait_when_a_waiting_request_is_closed(staff_user, time_machine):
    request = ResetRequestFactory(in_progress=True)
    due = request.due_at
    wait(request, staff_user)
    time_machine.shift(timedelta(hours=4))

    close(request, staff_user)

    stored = ResetRequest.objects.get(pk=request.pk)
    assert stored.due_at == due + timedelta(hours=4)
    assert stored.waiting_since is None


# --- Two staff at once ------------------------------------------------------------------------


def test_it_refuses_a_move_made_on_a_stale_status(staff_user, superuser):
    request = ResetRequestFactory()
    services.reset_start(reset_id=request.pk, actor=staff_user, expected_status="new")
    before = snapshot(request)

    # The second person's page still showed the request as new.
    with pytest.raises(ConcurrentChange):
        services.reset_close(reset_id=request.pk, actor=superuser, reason="duplicate", expected_status="new")

    assert snapshot(request) == before


def test_it_lets_only_one_of_two_simultaneous_moves_win(staff_user, superuser, monkeypatch):
    # Both read "in progress"; the other one's resolve lands between this
    # one's read and its write. The conditional update must notice.
    request = ResetRequestFactory(in_progress=True, identity_checked=True)
    real_get = ResetRequest.objects.get

    def get_then_lose_the_race(*args: Any, **kwargs: Any) -> ResetRequest:
        read = real_get(*args, **kwargs)
        monkeypatch.setattr(ResetRequest.objects, "get", real_get)
        services.reset_resolve(reset_id=request.pk, actor=superuser, outcome="reinvited")
        return read

    monkeypatch.setattr(ResetRequest.objects, "get", get_then_lose_the_race)

    with pytest.raises(ConcurrentChange):
        services.reset_close(reset_id=request.pk, actor=staff_user, reason="withdrawn")

    stored = ResetRequest.objects.get(pk=request.pk)
    assert stored.status == "resolved"
    assert list(stored.events.filter(kind="status").values_list("to_status", "actor")) == [("resolved", superuser.pk)]


# --- The database backs the rules up ----------------------------------------------------------


def assert_refused_by_the_database(request: ResetRequest, **changes: Any) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ResetRequest.objects.filter(pk=request.pk).update(**changes)


def test_it_refuses_an_unknown_status_in_the_database(reset_request):
    assert_refused_by_the_database(reset_request, status="archived")


def test_it_refuses_an_unknown_reason_in_the_database(reset_request):
    assert_refused_by_the_database(reset_request, reason="bored")


def test_it_refuses_a_resolved_row_without_an_outcome_in_the_database(reset_request):
    ended = {"status": "resolved", "is_open": False, "identity_verified_at": timezone.now()}

    assert_refused_by_the_database(reset_request, **ended)

    # The same row with an outcome is fine: it was the outcome that was missing.
    ResetRequest.objects.filter(pk=reset_request.pk).update(**ended, outcome="reinvited")


def test_it_refuses_a_resolved_row_without_an_identity_check_in_the_database(reset_request):
    assert_refused_by_the_database(reset_request, status="resolved", is_open=False, outcome="reinvited")


def test_it_refuses_a_closed_row_without_a_reason_in_the_database(reset_request):
    assert_refused_by_the_database(reset_request, status="closed", is_open=False)


def test_it_refuses_an_ended_row_that_says_it_is_open_in_the_database(reset_request):
    assert_refused_by_the_database(reset_request, status="closed", close_reason="spam", is_open=True)


def test_it_refuses_a_second_open_request_of_one_patient_in_the_database(reset_request):
    with pytest.raises(IntegrityError), transaction.atomic():
        ResetRequestFactory(email=reset_request.email, date_of_birth=reset_request.date_of_birth)


# --- The timeline is append-only ---------------------------------------------------------------


@pytest.fixture
def event(reset_request: ResetRequest, staff_user: Any) -> RequestEvent:
    return services.reset_add_note(reset_id=reset_request.pk, actor=staff_user, text="Left a voicemail")


def test_it_refuses_to_change_a_timeline_event(event):
    event.message = "Never called"

    with pytest.raises(AppendOnlyError):
        event.save()

    assert RequestEvent.objects.get(pk=event.pk).message == "Left a voicemail"


def test_it_refuses_to_delete_a_timeline_event(event):
    with pytest.raises(AppendOnlyError):
        event.delete()

    assert RequestEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize(
    "change",
    [
        lambda qs: qs.update(message="Never called"),
        lambda qs: qs.delete(),
        lambda qs: RequestEvent.objects.bulk_update([_edited(e) for e in qs], ["message"]),
    ],
    ids=["update", "delete", "bulk_update"],
)
def test_it_refuses_to_change_or_delete_timeline_events_in_bulk(event, change):
    # bulk_update opens its own transaction; the savepoint keeps the test's usable.
    with pytest.raises(AppendOnlyError), transaction.atomic():
        change(RequestEvent.objects.filter(pk=event.pk))

    assert RequestEvent.objects.get(pk=event.pk).message == "Left a voicemail"


def test_it_refuses_to_delete_the_timeline_through_its_request(event, reset_request):
    with pytest.raises(AppendOnlyError):
        reset_request.events.all().delete()

    assert RequestEvent.objects.filter(pk=event.pk).exists()


def _edited(event: RequestEvent) -> RequestEvent:
    event.message = "Never called"
    return event


# --- Assignment under concurrency, resend -----------------------------------


def test_it_refuses_an_assignment_when_someone_else_took_the_request_first(staff_user, superuser):
    request = ResetRequestFactory()
    services.reset_assign(reset_id=request.pk, assignee=superuser, actor=superuser)
    with pytest.raises(exceptions.ConcurrentChange):
        services.reset_assign(
            reset_id=request.pk,
            assignee=staff_user,
            actor=staff_user,
            expected_status="new",
            expected_assignee_id=None,
        )
    request.refresh_from_db()
    assert request.assignee == superuser
    assert request.events.filter(kind=RequestEvent.Kind.ASSIGNED).count() == 1


def test_it_resends_the_acknowledgment_as_a_new_outbox_row_recording_who(
    staff_user, django_capture_on_commit_callbacks
):
    request = ResetRequestFactory()
    with django_capture_on_commit_callbacks(execute=True):
        services.reset_resend_acknowledgment(reset_id=request.pk, actor=staff_user)
        services.reset_resend_acknowledgment(reset_id=request.pk, actor=staff_user)
    assert request.emails.filter(kind="acknowledgment", state="sent").count() == 2
    assert request.events.filter(kind=RequestEvent.Kind.EMAIL_QUEUED, actor=staff_user).count() == 2


def test_it_sends_no_acknowledgment_again_for_an_ended_request(staff_user):
    request = ResetRequestFactory(closed=True)
    with pytest.raises(exceptions.TransitionNotAllowed):
        services.reset_resend_acknowledgment(reset_id=request.pk, actor=staff_user)
    assert not request.emails.exists()
