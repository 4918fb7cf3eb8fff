"""A second request with the same email and date of birth while one is open
is attached to the open one: no second row, a DUPLICATE event on its
timeline, a fresh acknowledgment, and the same answer the patient gets for a
new request, so the page never tells whether someone already asked."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from requests_app import services
from requests_app.models import OutboundEmail, RequestEvent, ResetRequest

from .conftest import family_data, valid_form_data

pytestmark = pytest.mark.django_db

PATIENT = "maria.lopez@example.com"
STAFF = "staff@practice.example"


@pytest.fixture
def first(submit: Any) -> ResetRequest:
    response = submit(valid_form_data())
    assert response.status_code == 303
    mail.outbox.clear()
    return ResetRequest.objects.get()


def test_it_attaches_a_second_request_to_the_open_one(submit, first):
    response = submit(valid_form_data(reason="never_received", phone="555-777-8899", details="Second try"))

    assert ResetRequest.objects.count() == 1
    first.refresh_from_db()
    assert first.reason == "link_expired"
    assert first.phone == "+15552013344"
    assert first.details == ""
    duplicate = first.events.get(kind=RequestEvent.Kind.DUPLICATE)
    # Staff see on the timeline what the second submission said.
    assert "+15557778899" in duplicate.message
    assert "Second try" in duplicate.message
    assert response.status_code == 303


def test_it_answers_a_repeat_exactly_as_a_new_request(submit, first):
    response = submit(valid_form_data())

    assert response.status_code == 303
    assert response["Location"] == f"/reset/submitted/{first.reference}/"


def test_it_sends_a_fresh_acknowledgment_but_no_second_staff_notification(submit, first):
    submit(valid_form_data())

    assert [m.to for m in mail.outbox] == [[PATIENT]]
    assert first.reference in mail.outbox[0].subject + mail.outbox[0].body
    assert list(first.emails.order_by("pk").values_list("kind", "state")) == [
        ("acknowledgment", "sent"),
        ("staff_new_request", "sent"),
        ("acknowledgment", "sent"),
    ]


@pytest.mark.parametrize("email", ["MARIA.LOPEZ@EXAMPLE.COM", "Maria.Lopez@Example.com", " maria.lopez@example.com "])
def test_it_matches_the_email_in_any_case(submit, first, email):
    submit(valid_form_data(email=email))

    assert ResetRequest.objects.count() == 1
    assert first.events.filter(kind=RequestEvent.Kind.DUPLICATE).count() == 1


def test_it_attaches_to_a_request_staff_already_work_on(submit, first, staff_user):
    services.reset_start(reset_id=first.pk, actor=staff_user)
    services.reset_wait(reset_id=first.pk, actor=staff_user)

    submit(valid_form_data())

    assert ResetRequest.objects.count() == 1
    first.refresh_from_db()
    assert first.status == "waiting"
    assert first.events.filter(kind=RequestEvent.Kind.DUPLICATE).count() == 1


def test_it_records_each_repeat_on_the_timeline(submit, first):
    for _ in range(3):
        submit(valid_form_data())

    assert ResetRequest.objects.count() == 1
    assert first.events.filter(kind=RequestEvent.Kind.DUPLICATE).count() == 3
    assert OutboundEmail.objects.filter(kind="acknowledgment").count() == 4


def test_it_does_not_add_the_family_members_of_a_repeat_to_the_open_request(submit, first):
    submit({**valid_form_data(), **family_data(("Ana", "Lopez", "2012-09-01"))})

    assert first.family_members.count() == 0
    assert "Ana Lopez" in first.events.get(kind=RequestEvent.Kind.DUPLICATE).message


def test_it_files_a_new_request_for_a_different_date_of_birth(submit, first):
    # A parent and child who share one email address.
    response = submit(valid_form_data(first_name="Ana", date_of_birth="2012-09-01"))

    second = ResetRequest.objects.exclude(pk=first.pk).get()
    assert second.first_name == "Ana"
    assert response["Location"] == f"/reset/submitted/{second.reference}/"
    assert not first.events.filter(kind=RequestEvent.Kind.DUPLICATE).exists()
    assert [m.to for m in mail.outbox] == [[PATIENT], [STAFF]]


def test_it_files_a_new_request_for_a_different_email(submit, first):
    submit(valid_form_data(email="m.lopez@example.org"))

    assert ResetRequest.objects.count() == 2
    assert not first.events.filter(kind=RequestEvent.Kind.DUPLICATE).exists()


def test_it_files_a_new_request_once_the_first_was_resolved(submit, first, staff_user):
    services.reset_start(reset_id=first.pk, actor=staff_user)
    services.reset_record_identity_check(reset_id=first.pk, actor=staff_user, dob=True, phone=True, email=False)
    services.reset_resolve(reset_id=first.pk, actor=staff_user, outcome="reinvited")
    mail.outbox.clear()

    response = submit(valid_form_data())

    second = ResetRequest.objects.exclude(pk=first.pk).get()
    assert second.status == "new"
    assert response["Location"] == f"/reset/submitted/{second.reference}/"
    assert not first.events.filter(kind=RequestEvent.Kind.DUPLICATE).exists()
    assert [m.to for m in mail.outbox] == [[PATIENT], [STAFF]]


def test_it_files_a_new_request_once_the_first_was_closed(submit, first, staff_user):
    services.reset_close(reset_id=first.pk, actor=staff_user, reason="withdrawn")

    submit(valid_form_data())

    assert ResetRequest.objects.filter(status="new").count() == 1
    assert ResetRequest.objects.exclude(pk=first.pk).get().status == "new"
    assert not first.events.filter(kind=RequestEvent.Kind.DUPLICATE).exists()


def test_it_attaches_to_the_new_request_after_the_first_was_closed(submit, first, staff_user):
    services.reset_close(reset_id=first.pk, actor=staff_user, reason="withdrawn")
    submit(valid_form_data())
    second = ResetRequest.objects.exclude(pk=first.pk).get()

    submit(valid_form_data())

    assert ResetRequest.objects.count() == 2
    assert second.events.filter(kind=RequestEvent.Kind.DUPLICATE).count() == 1
    assert not first.events.filter(kind=RequestEvent.Kind.DUPLICATE).exists()
