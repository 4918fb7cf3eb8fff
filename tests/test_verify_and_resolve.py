"""The front desk's one form: a new or in-progress request is started (if
new), its identity check recorded and resolved in one transaction, each
step on the timeline with the one who did it, and the patient emailed. All
or nothing: an identity check that does not meet the rule, a status that
does not allow it, or someone else's move in between writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core import mail

from requests_app import services
from requests_app.exceptions import ConcurrentChange, IdentityNotVerified, TransitionNotAllowed, WorkflowError
from requests_app.models import RequestEvent, ResetRequest
from requests_app.services import workflow

from .factories import ResetRequestFactory
from .support.snapshots import snapshot

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def verify_and_resolve(request: ResetRequest, actor: Any, **kwargs: Any) -> ResetRequest:
    answers = {"dob": True, "phone": True, "email": False, "outcome": "reinvited", **kwargs}
    return services.reset_verify_and_resolve(reset_id=request.pk, actor=actor, **answers)


def steps(request: ResetRequest) -> list[tuple[str, str, str, Any]]:
    """The timeline's workflow events, in order (the outbox's left out)."""
    return [
        (e.kind, e.from_status, e.to_status, e.actor)
        for e in RequestEvent.objects.filter(reset=request).exclude(kind=RequestEvent.Kind.EMAIL_QUEUED)
    ]


# --- From new ------------------------------------------------------------------------


def test_it_starts_checks_and_resolves_a_new_request_in_one_go(staff_user):
    request = ResetRequestFactory()

    resolved = verify_and_resolve(request, staff_user, email=True, outcome="email_corrected", note="New address")

    assert resolved.status == "resolved"
    stored = ResetRequest.objects.get(pk=request.pk)
    assert (stored.status, stored.outcome, stored.assignee, stored.ended_at) == (
        "resolved",
        "email_corrected",
        staff_user,
        NOW,
    )
    assert (stored.identity_dob_matched, stored.identity_phone_matched, stored.identity_email_matched) == (
        True,
        True,
        True,
    )
    assert (stored.identity_verified_by, stored.identity_verified_at) == (staff_user, NOW)


def test_it_puts_each_step_of_a_new_request_on_the_timeline_with_the_actor(staff_user):
    request = ResetRequestFactory()

    verify_and_resolve(request, staff_user, note="Re-invited while on the phone")

    assert steps(request) == [
        ("status", "new", "in_progress", staff_user),
        ("assigned", "", "", staff_user),
        ("identity", "", "", staff_user),
        ("status", "in_progress", "resolved", staff_user),
    ]
    events = RequestEvent.objects.filter(reset=request)
    assert events.get(kind="assigned").message == "Assigned to Nora Nurse"
    assert events.get(kind="identity").message == "Matched the chart: date of birth, phone"
    assert events.get(to_status="resolved").message == "Re-invited while on the phone"


def test_it_keeps_the_assignee_of_a_new_request_someone_else_holds(staff_user, superuser):
    request = ResetRequestFactory(assignee=superuser)

    verify_and_resolve(request, staff_user)

    assert ResetRequest.objects.get(pk=request.pk).assignee == superuser
    assert [kind for kind, *_ in steps(request)] == ["status", "identity", "status"]


def test_it_emails_the_patient_the_resolution(staff_user, django_capture_on_commit_callbacks):
    request = ResetRequestFactory()

    with django_capture_on_commit_callbacks(execute=True):
        verify_and_resolve(request, staff_user)

    assert list(request.emails.values_list("kind", "state")) == [("resolved", "sent")]
    [message] = mail.outbox
    assert message.to == [request.email]
    assert request.reference in message.subject


# --- From in progress -----------------------------------------------------------------------


def test_it_checks_and_resolves_a_request_in_progress(staff_user, superuser):
    request = ResetRequestFactory(in_progress=True, assignee=superuser)

    verify_and_resolve(request, staff_user, phone=False, email=True, expected_status="in_progress")

    stored = ResetRequest.objects.get(pk=request.pk)
    assert (stored.status, stored.assignee, stored.identity_email_matched, stored.identity_phone_matched) == (
        "resolved",
        superuser,
        True,
        False,
    )
    assert steps(request) == [
        ("identity", "", "", staff_user),
        ("status", "in_progress", "resolved", staff_user),
    ]


def test_it_records_the_new_identity_check_over_an_earlier_one(staff_user, superuser):
    request = ResetRequestFactory(in_progress=True, identity_checked=True)

    verify_and_resolve(request, superuser, phone=False, email=True)

    stored = ResetRequest.objects.get(pk=request.pk)
    assert (stored.identity_verified_by, stored.identity_phone_matched, stored.identity_email_matched) == (
        superuser,
        False,
        True,
    )


# --- Refused, nothing written ---------------------------------------------------------------


@pytest.mark.parametrize("traits", [{}, {"in_progress": True}])
@pytest.mark.parametrize(
    ("dob", "phone", "email"),
    [(True, False, False), (False, True, True), (False, True, False), (False, False, False)],
)
def test_it_refuses_without_the_date_of_birth_and_one_more_and_writes_nothing(staff_user, traits, dob, phone, email):
    request = ResetRequestFactory(**traits)
    before = snapshot(request)

    with pytest.raises(IdentityNotVerified) as refused:
        verify_and_resolve(request, staff_user, dob=dob, phone=phone, email=email)

    assert "date of birth and at least one more identifier" in str(refused.value)
    assert snapshot(request) == before


@pytest.mark.parametrize("outcome", ["", "fixed", None])
def test_it_refuses_without_a_known_outcome_and_writes_nothing(staff_user, outcome):
    request = ResetRequestFactory()
    before = snapshot(request)

    with pytest.raises(WorkflowError, match="Choose the outcome"):
        verify_and_resolve(request, staff_user, outcome=outcome)

    assert snapshot(request) == before


@pytest.mark.parametrize(
    ("traits", "status"),
    [({"waiting": True}, "waiting on patient"), ({"resolved": True}, "resolved"), ({"closed": True}, "closed")],
)
def test_it_refuses_a_request_that_is_not_new_or_in_progress(staff_user, traits, status):
    request = ResetRequestFactory(**traits)
    before = snapshot(request)

    with pytest.raises(TransitionNotAllowed) as refused:
        verify_and_resolve(request, staff_user)

    assert str(refused.value) == (
        f"{request.reference} is {status}; only a new or in-progress request can be verified and resolved in one step."
    )
    assert snapshot(request) == before


def test_it_offers_the_same_answer_before_the_form_is_sent(staff_user):
    # The request page asks before it shows the form.
    request = ResetRequestFactory(waiting=True)

    with pytest.raises(TransitionNotAllowed, match="only a new or in-progress request"):
        services.check_verify_and_resolve(request)
    services.check_verify_and_resolve(ResetRequestFactory())
    services.check_verify_and_resolve(ResetRequestFactory(in_progress=True), expected_status="in_progress")


# --- Two staff at once -----------------------------------------------------------------------


def test_it_refuses_a_form_sent_from_a_stale_page(staff_user, superuser):
    request = ResetRequestFactory()
    services.reset_start(reset_id=request.pk, actor=superuser)
    before = snapshot(request)

    # The page still showed the request as new.
    with pytest.raises(ConcurrentChange):
        verify_and_resolve(request, staff_user, expected_status="new")

    assert snapshot(request) == before


@pytest.mark.parametrize(
    ("traits", "meanwhile"),
    [
        ({}, lambda pk, who: services.reset_close(reset_id=pk, actor=who, reason="duplicate")),
        ({}, lambda pk, who: services.reset_start(reset_id=pk, actor=who)),
        ({"in_progress": True}, lambda pk, who: services.reset_wait(reset_id=pk, actor=who)),
    ],
    ids=["new-closed-meanwhile", "new-started-meanwhile", "in-progress-set-waiting-meanwhile"],
)
def test_it_writes_nothing_when_someone_moved_the_request_meanwhile(
    staff_user, superuser, monkeypatch, traits, meanwhile
):
    # Both read the same status; the other one's move lands between this
    # form's read and its first write.
    request = ResetRequestFactory(**traits)
    real_get = ResetRequest.objects.get

    def get_then_lose_the_race(*args: Any, **kwargs: Any) -> ResetRequest:
        read = real_get(*args, **kwargs)
        monkeypatch.setattr(ResetRequest.objects, "get", real_get)
        meanwhile(request.pk, superuser)
        return read

    monkeypatch.setattr(ResetRequest.objects, "get", get_then_lose_the_race)
    with pytest.raises(ConcurrentChange):
        verify_and_resolve(request, staff_user)
    monkeypatch.undo()

    stored = ResetRequest.objects.get(pk=request.pk)
    assert stored.status != "resolved"
    assert (stored.identity_verified_at, stored.outcome) == (None, "")
    assert not RequestEvent.objects.filter(reset=request, actor=staff_user).exists()


def test_it_undoes_the_start_and_the_identity_check_when_the_resolve_step_is_refused(staff_user, monkeypatch):
    # One transaction: a refusal at the last step takes the first two with it.
    request = ResetRequestFactory()
    before = snapshot(request)

    def someone_was_faster(**kwargs: Any) -> ResetRequest:
        raise ConcurrentChange(f"{request.reference} was changed by someone else at the same time; nothing was saved.")

    monkeypatch.setattr(workflow, "reset_resolve", someone_was_faster)

    with pytest.raises(ConcurrentChange):
        verify_and_resolve(request, staff_user)

    assert snapshot(request) == before
