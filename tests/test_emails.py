"""The emails a submission sends: the acknowledgment to the patient and the
notification to staff. Minimum necessary: the acknowledgment carries the
reference and the status link (built from SITE_URL, never from the Host
header) and never the date of birth, phone, details or last name; the staff
notification carries none of the patient's identifiers.

These tests assert on data, not on the templates' wording."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from requests_app import services
from requests_app.models import ResetRequest

from .conftest import UNMISTAKABLE_PATIENT, valid_form_data
from .support.mail_parts import everything, html_part, sent, text_part

pytestmark = pytest.mark.django_db

PATIENT = UNMISTAKABLE_PATIENT
# Every way a message could show the date of birth, phone, details, last name.
NEVER_TO_THE_PATIENT = ["1975", "Quattlebaum", "+15559871234", "555-987-1234", "5559871234", "987-1234", "firmware"]
NEVER_TO_STAFF = [*NEVER_TO_THE_PATIENT, "Zebulon", "zq.private"]


def message_to(address: str) -> Any:
    [message] = [m for m in mail.outbox if m.to == [address]]
    return message


@pytest.fixture
def filed(submit: Any) -> ResetRequest:
    response = submit(valid_form_data(**PATIENT))
    assert response.status_code == 303
    return ResetRequest.objects.get()


# --- The acknowledgment -------------------------------------------------------------


def test_it_sends_the_acknowledgment_to_the_patient_only(filed, settings):
    message = message_to("zq.private@example.com")

    # From the practice by name: "IFM <DEFAULT_FROM_EMAIL>".
    assert [(a.display_name, a.addr_spec) for a in sent(message)["From"].addresses] == [
        (settings.PRACTICE_NAME, settings.DEFAULT_FROM_EMAIL)
    ]
    assert message.cc == []
    assert message.bcc == []


def test_it_puts_the_reference_in_the_subject_and_both_parts(filed):
    message = message_to("zq.private@example.com")

    assert filed.reference in message.subject
    assert filed.reference in text_part(message)
    assert filed.reference in html_part(message)


def test_it_sends_a_plain_text_and_an_html_part(filed):
    parsed = sent(message_to("zq.private@example.com"))

    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]


def test_it_builds_the_status_link_from_site_url_not_the_host_header(submit, settings, client):
    settings.SITE_URL = "https://portal.practice.example"
    settings.ALLOWED_HOSTS = ["*"]

    response = submit(valid_form_data(**PATIENT), HTTP_HOST="attacker.example:8443")

    assert response.status_code == 303
    request = ResetRequest.objects.get()
    message = message_to("zq.private@example.com")
    link = "https://portal.practice.example" + request.get_status_url()
    assert link in text_part(message)
    assert f'href="{link}"' in html_part(message)
    assert "attacker.example" not in everything(message)
    assert "attacker.example" not in everything(message_to(settings.STAFF_NOTIFY_EMAIL))
    # The link in the email opens the status page.
    assert client.get(request.get_status_url()).status_code == 200


def test_it_keeps_the_date_of_birth_phone_details_and_last_name_out_of_the_acknowledgment(filed):
    content = everything(message_to("zq.private@example.com"))

    for value in NEVER_TO_THE_PATIENT:
        assert value not in content


def test_it_sends_the_acknowledgment_again_to_a_repeat_without_personal_data(submit, filed):
    mail.outbox.clear()

    submit(valid_form_data(**{**PATIENT, "details": "Still locked out, the router again"}))

    message = message_to("zq.private@example.com")
    assert filed.reference in message.subject
    content = everything(message)
    for value in [*NEVER_TO_THE_PATIENT, "router"]:
        assert value not in content


# --- The staff notification ------------------------------------------------------------


def test_it_notifies_staff_at_staff_notify_email(submit, settings):
    settings.STAFF_NOTIFY_EMAIL = "frontdesk@clinic.example"

    submit(valid_form_data(**PATIENT))

    request = ResetRequest.objects.get()
    message = message_to("frontdesk@clinic.example")
    assert request.reference in message.subject + text_part(message)
    assert request.reference in html_part(message)
    assert sorted(m.to[0] for m in mail.outbox) == ["frontdesk@clinic.example", "zq.private@example.com"]


def test_it_keeps_the_patient_identifiers_out_of_the_staff_notification(filed, settings):
    content = everything(message_to(settings.STAFF_NOTIFY_EMAIL))

    for value in NEVER_TO_STAFF:
        assert value not in content


def test_it_keeps_the_patient_status_link_out_of_the_staff_notification(filed, settings):
    # The status link is the patient's secret; staff work in the admin.
    content = everything(message_to(settings.STAFF_NOTIFY_EMAIL))

    assert filed.status_secret not in content


# --- Resolution and closure ---------------------------------------------------------------


@pytest.fixture
def started(filed: ResetRequest, staff_user: Any) -> ResetRequest:
    services.reset_start(reset_id=filed.pk, actor=staff_user)
    services.reset_record_identity_check(reset_id=filed.pk, actor=staff_user, dob=True, phone=True, email=False)
    mail.outbox.clear()
    return filed


def test_it_tells_the_patient_of_the_resolution_without_personal_data_or_staff_notes(
    started, staff_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.reset_resolve(
            reset_id=started.pk, actor=staff_user, outcome="reinvited", note="Chart note: Medicare 1EG4-TE5-MK73"
        )

    message = message_to("zq.private@example.com")
    assert started.reference in message.subject
    content = everything(message)
    assert "Medicare" not in content
    for value in NEVER_TO_THE_PATIENT:
        assert value not in content


def test_it_tells_the_patient_of_the_closure_without_personal_data_or_staff_notes(
    started, staff_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.reset_close(
            reset_id=started.pk, actor=staff_user, reason="unverified", note="Voicemail full at 555-987-1234"
        )

    message = message_to("zq.private@example.com")
    assert started.reference in message.subject
    content = everything(message)
    assert "Voicemail" not in content
    for value in NEVER_TO_THE_PATIENT:
        assert value not in content


def test_it_sends_no_closure_email_for_spam(started, staff_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.reset_close(reset_id=started.pk, actor=staff_user, reason="spam")

    assert mail.outbox == []
