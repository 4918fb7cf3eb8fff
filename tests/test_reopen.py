"""Reopening an ended request: only by the reopen action, with a reason,
within REOPEN_DAYS of the end, never while the same patient has another
open request. It clears the outcome, the close reason and the identity
check (the timeline says what they were), starts the due clock again in
working hours, gives the request to the one who reopens it, and emails the
patient unless staff turn that off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail

from requests_app import services
from requests_app.exceptions import ConcurrentChange, TransitionNotAllowed, WorkflowError
from requests_app.models import Action, RequestEvent, ResetRequest
from requests_app.services import workflow
from requests_app.working_hours import add_working_hours

from .factories import ResetRequestFactory, StaffUserFactory
from .support.snapshots import snapshot
from .test_i18n import _compiled_catalogs  # noqa: F401  (the Spanish catalog, compiled as make does)

pytestmark = pytest.mark.django_db

# Monday 10:00 in New York (the default practice time zone).
NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any, settings: Any) -> None:
    settings.PRACTICE_HOURS = "Mon-Fri 08:00-17:00"
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    settings.RESET_SLA_HOURS = 24
    settings.REOPEN_DAYS = 30
    time_machine.move_to(NOW, tick=False)


def resolved_by(nurse: Any, **fields: Any) -> ResetRequest:
    """A request the nurse started, checked and resolved, as the admin does it."""
    request = ResetRequestFactory(**fields)
    services.reset_start(reset_id=request.pk, actor=nurse)
    services.reset_record_identity_check(reset_id=request.pk, actor=nurse, dob=True, phone=True, email=False)
    services.reset_resolve(reset_id=request.pk, actor=nurse, outcome="reinvited")
    return ResetRequest.objects.get(pk=request.pk)


def reopen(request: ResetRequest, actor: Any, **kwargs: Any) -> ResetRequest:
    kwargs.setdefault("reason", "still_no_access")
    return services.reset_reopen(reset_id=request.pk, actor=actor, **kwargs)


def reopen_event(request: ResetRequest) -> RequestEvent:
    return RequestEvent.objects.get(
        reset=request, kind=RequestEvent.Kind.STATUS, to_status="in_progress", from_status__in=["resolved", "closed"]
    )


@pytest.fixture
def boss(db: None) -> Any:
    return StaffUserFactory(username="boss", first_name="Bea", last_name="Boss")


# --- What a reopen clears, and what the timeline keeps --------------------------------


def test_it_reopens_a_resolved_request_and_clears_its_outcome_and_identity_check(staff_user, boss, time_machine):
    request = resolved_by(staff_user)
    time_machine.shift(timedelta(days=2))

    reopened = reopen(request, boss)

    assert reopened.status == "in_progress"
    stored = ResetRequest.objects.get(pk=request.pk)
    assert (stored.status, stored.is_open, stored.outcome, stored.close_reason, stored.ended_at) == (
        "in_progress",
        True,
        "",
        "",
        None,
    )
    assert (stored.identity_dob_matched, stored.identity_phone_matched, stored.identity_email_matched) == (
        False,
        False,
        False,
    )
    assert (stored.identity_verified_by, stored.identity_verified_at) == (None, None)
    # Resolving again needs a new identity check.
    with pytest.raises(WorkflowError, match="Record the identity check"):
        services.reset_resolve(reset_id=request.pk, actor=boss, outcome="reinvited")


def test_it_keeps_on_the_timeline_what_the_reopen_cleared(staff_user, boss, time_machine):
    request = resolved_by(staff_user)
    time_machine.shift(timedelta(days=2))

    reopen(request, boss)

    event = reopen_event(request)
    assert (event.from_status, event.to_status, event.actor) == ("resolved", "in_progress", boss)
    assert event.message == (
        "Reopened: The patient still cannot get in. "
        "Was: resolved (Re-invited to the portal); identity check by Nora Nurse on Jun 15 cleared."
    )
    # The identity check's own event is still there, untouched.
    identity = RequestEvent.objects.get(reset=request, kind=RequestEvent.Kind.IDENTITY)
    assert (identity.actor, identity.message) == (staff_user, "Matched the chart: date of birth, phone")


def test_it_names_the_close_reason_and_the_note_on_the_timeline(staff_user):
    request = ResetRequestFactory(closed=True, close_reason="duplicate")

    reopen(request, staff_user, reason="closed_by_mistake", note="Not a duplicate: the other was her son")

    assert reopen_event(request).message == (
        "Reopened: Ended by mistake. Note: Not a duplicate: the other was her son. Was: closed (Duplicate)."
    )
    assert ResetRequest.objects.get(pk=request.pk).close_reason == ""


def test_it_reopens_for_another_reason_with_the_note_saying_which(staff_user):
    request = ResetRequestFactory(closed=True, close_reason="unverified")

    reopen(request, staff_user, reason="other", note="She called back from her work phone.")

    assert reopen_event(request).message == (
        "Reopened: Other reason. Note: She called back from her work phone. "
        "Was: closed (Identity could not be verified)."
    )


@pytest.mark.parametrize("reason", ["", "bored", "STILL_NO_ACCESS", None])
def test_it_refuses_to_reopen_without_a_known_reason(staff_user, reason):
    request = ResetRequestFactory(resolved=True)
    before = snapshot(request)

    with pytest.raises(WorkflowError) as refused:
        reopen(request, staff_user, reason=reason)

    assert str(refused.value) == "Choose why the request is reopened."
    assert snapshot(request) == before


# --- Who holds it ------------------------------------------------------------------------


def test_it_gives_the_reopened_request_to_the_one_who_reopens_it(staff_user, boss):
    request = resolved_by(staff_user)

    reopen(request, boss)

    assert ResetRequest.objects.get(pk=request.pk).assignee == boss
    assigned = RequestEvent.objects.filter(reset=request, kind=RequestEvent.Kind.ASSIGNED).last()
    assert assigned is not None
    assert (assigned.actor, assigned.message) == (boss, "Assigned to Bea Boss")


def test_it_records_no_assignment_when_the_holder_reopens_it(staff_user):
    request = resolved_by(staff_user)
    assignments = RequestEvent.objects.filter(reset=request, kind=RequestEvent.Kind.ASSIGNED).count()

    reopen(request, staff_user)

    assert ResetRequest.objects.get(pk=request.pk).assignee == staff_user
    assert RequestEvent.objects.filter(reset=request, kind=RequestEvent.Kind.ASSIGNED).count() == assignments


# --- The due clock starts again ---------------------------------------------------------------


def test_it_restarts_the_due_clock_in_working_hours_from_the_reopen(staff_user, time_machine):
    request = ResetRequestFactory(resolved=True)
    # Friday 16:00 in New York.
    reopened_at = datetime(2026, 6, 19, 20, 0, tzinfo=UTC)
    time_machine.move_to(reopened_at, tick=False)

    reopen(request, staff_user)

    due = ResetRequest.objects.get(pk=request.pk).due_at
    assert due == add_working_hours(reopened_at, 24)
    # 1 hour on Friday, 9 on Monday, 9 on Tuesday, 5 on Wednesday: 13:00.
    assert due == datetime(2026, 6, 24, 17, 0, tzinfo=UTC)


def test_it_reopens_a_request_closed_while_waiting_with_no_paused_clock(staff_user):
    request = ResetRequestFactory(in_progress=True)
    services.reset_wait(reset_id=request.pk, actor=staff_user)
    services.reset_close(reset_id=request.pk, actor=staff_user, reason="unverified")

    reopen(request, staff_user)

    stored = ResetRequest.objects.get(pk=request.pk)
    assert (stored.waiting_since, stored.due_owed) == (None, None)
    assert stored.due_at == add_working_hours(NOW, 24)


# --- Within REOPEN_DAYS ------------------------------------------------------------------


def test_it_reopens_a_request_that_ended_exactly_reopen_days_ago(staff_user, time_machine):
    request = ResetRequestFactory(resolved=True)
    time_machine.shift(timedelta(days=30))

    assert reopen(request, staff_user).status == "in_progress"


def test_it_refuses_to_reopen_a_request_that_ended_a_minute_more_than_reopen_days_ago(staff_user, time_machine):
    request = ResetRequestFactory(resolved=True)
    time_machine.shift(timedelta(days=30, minutes=1))
    before = snapshot(request)

    with pytest.raises(TransitionNotAllowed) as refused:
        reopen(request, staff_user)

    assert str(refused.value) == (
        f"{request.reference} ended more than 30 days ago; ask the patient to file a new request."
    )
    assert snapshot(request) == before


def test_it_counts_the_window_in_reopen_days(staff_user, time_machine, settings):
    settings.REOPEN_DAYS = 7
    request = ResetRequestFactory(closed=True)
    time_machine.shift(timedelta(days=8))

    with pytest.raises(TransitionNotAllowed, match="ended more than 7 days ago"):
        reopen(request, staff_user)


def test_it_refuses_to_reopen_a_request_whose_personal_data_was_erased(staff_user, time_machine, settings):
    settings.RETENTION_DAYS = 1
    request = ResetRequestFactory(resolved=True)
    time_machine.shift(timedelta(days=2))
    assert services.resets_purge_expired() == 1
    before = snapshot(request)

    with pytest.raises(TransitionNotAllowed) as refused:
        reopen(request, staff_user)

    assert "personal data was erased" in str(refused.value)
    assert snapshot(request) == before


# --- One open request per patient ------------------------------------------------------------


def test_it_refuses_to_reopen_while_the_patient_has_another_open_request(staff_user):
    ended = ResetRequestFactory(resolved=True)
    open_one = ResetRequestFactory(email=ended.email, date_of_birth=ended.date_of_birth)
    before = snapshot(ended)

    with pytest.raises(TransitionNotAllowed) as refused:
        reopen(ended, staff_user)

    assert str(refused.value) == (
        f"{ended.reference} cannot be reopened: the same patient has an open request, {open_one.reference}. "
        "Work that one instead."
    )
    assert snapshot(ended) == before


def test_it_tells_the_reopen_page_the_same_as_the_reopen(staff_user):
    # The admin asks check_move before it shows the reopen form.
    ended = ResetRequestFactory(closed=True)
    open_one = ResetRequestFactory(email=ended.email, date_of_birth=ended.date_of_birth, in_progress=True)

    with pytest.raises(TransitionNotAllowed, match=open_one.reference):
        services.check_move(ended, action=Action.REOPEN, expected_status="closed")


def test_it_reopens_when_the_patient_s_other_requests_have_ended(staff_user):
    ended = ResetRequestFactory(resolved=True)
    ResetRequestFactory(email=ended.email, date_of_birth=ended.date_of_birth, closed=True)

    assert reopen(ended, staff_user).status == "in_progress"


def test_it_names_a_request_the_patient_filed_while_the_reopen_was_being_written(staff_user, monkeypatch):
    # The patient's new request was committed just after the reopen's check
    # looked (so the check saw none): the database's one-open-request index
    # refuses the write, and staff are told which request is in the way.
    ended = ResetRequestFactory(resolved=True)
    other = ResetRequestFactory(email=ended.email, date_of_birth=ended.date_of_birth)
    before = snapshot(ended)
    real_check = workflow._check_reopen
    checks: list[ResetRequest] = []

    def check_that_looked_before_the_patient_filed(reset: ResetRequest) -> None:
        checks.append(reset)
        if len(checks) > 1:
            real_check(reset)

    monkeypatch.setattr(workflow, "_check_reopen", check_that_looked_before_the_patient_filed)

    with pytest.raises(TransitionNotAllowed) as refused:
        reopen(ended, staff_user)

    assert f"the same patient has an open request, {other.reference}." in str(refused.value)
    assert snapshot(ended) == before


# --- Two staff at once ---------------------------------------------------------------------------


def test_it_refuses_a_reopen_from_a_stale_page(staff_user, boss):
    request = ResetRequestFactory(resolved=True)
    reopen(request, boss, expected_status="resolved")
    before = snapshot(request)

    with pytest.raises(ConcurrentChange):
        reopen(request, staff_user, expected_status="resolved")

    assert snapshot(request) == before


def test_it_lets_only_one_of_two_simultaneous_reopens_win(
    staff_user, boss, monkeypatch, django_capture_on_commit_callbacks
):
    # Both read "resolved"; the boss's reopen lands between this one's read
    # and its write. The conditional update must notice.
    request = ResetRequestFactory(resolved=True)
    real_get = ResetRequest.objects.get

    def get_then_lose_the_race(*args: Any, **kwargs: Any) -> ResetRequest:
        read = real_get(*args, **kwargs)
        monkeypatch.setattr(ResetRequest.objects, "get", real_get)
        reopen(request, boss)
        return read

    monkeypatch.setattr(ResetRequest.objects, "get", get_then_lose_the_race)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ConcurrentChange):
        reopen(request, staff_user)

    stored = ResetRequest.objects.get(pk=request.pk)
    assert (stored.status, stored.assignee) == ("in_progress", boss)
    assert list(stored.events.filter(kind="status").values_list("to_status", "actor")) == [("in_progress", boss.pk)]
    assert list(stored.emails.values_list("kind", flat=True)) == ["reopened"]


# --- The patient's email --------------------------------------------------------------------------


def patient_message(request: ResetRequest) -> Any:
    [message] = [m for m in mail.outbox if m.to == [request.email]]
    return message


def test_it_emails_the_patient_that_the_request_is_reopened(staff_user, django_capture_on_commit_callbacks):
    request = ResetRequestFactory(resolved=True, first_name="Maria")

    with django_capture_on_commit_callbacks(execute=True):
        reopen(request, staff_user)

    assert list(request.emails.values_list("kind", "to", "state")) == [("reopened", request.email, "sent")]
    queued = RequestEvent.objects.get(reset=request, kind=RequestEvent.Kind.EMAIL_QUEUED)
    assert (queued.actor, queued.message) == (staff_user, "Reopened")
    message = patient_message(request)
    assert request.reference in message.subject
    text = message.body
    [(html, _)] = message.alternatives
    for part in (text, html):
        assert "Dear Maria," in part
        assert "We have reopened your request" in part
        assert "confirm who you are" in part
        # Monday 10:00 plus 24 working hours: Wednesday 16:00, the new due time.
        assert "We usually reset your portal access by Wednesday, June 17, 4:00 PM (our local time)." in part
        assert request.get_status_url() in part
        assert "Spam or Junk" in part
        assert "(555) 010-0199" in part
    assert ResetRequest.objects.get(pk=request.pk).due_at == datetime(2026, 6, 17, 20, 0, tzinfo=UTC)
    assert "WHAT HAPPENS NEXT" in text
    assert "What happens next" in html
    assert "tel:+15550100199" in html


def test_it_emails_a_spanish_speaking_patient_in_spanish(staff_user, django_capture_on_commit_callbacks):
    request = ResetRequestFactory(resolved=True, language="es", first_name="Lucía")

    with django_capture_on_commit_callbacks(execute=True):
        reopen(request, staff_user)

    message = patient_message(request)
    assert message.extra_headers["Content-Language"] == "es"
    assert "estamos trabajando de nuevo en su solicitud" in message.subject
    text = message.body
    [(html, _)] = message.alternatives
    assert "QUÉ SIGUE AHORA" in text
    assert "Qué sigue ahora" in html
    for part in (text, html):
        assert "Hemos reabierto su solicitud" in part
        assert "miércoles 17 de junio" in part
        assert "We have reopened" not in part


def test_it_sends_no_email_when_staff_turn_the_notice_off(staff_user, django_capture_on_commit_callbacks):
    request = ResetRequestFactory(closed=True)

    with django_capture_on_commit_callbacks(execute=True):
        reopen(request, staff_user, notify_patient=False)

    assert ResetRequest.objects.get(pk=request.pk).status == "in_progress"
    assert not request.emails.exists()
    assert not RequestEvent.objects.filter(reset=request, kind=RequestEvent.Kind.EMAIL_QUEUED).exists()
    assert mail.outbox == []
