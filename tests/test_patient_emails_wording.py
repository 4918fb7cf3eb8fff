"""How patient emails present themselves: the sender carries the practice's
name, the acknowledgment ends with a sign-off (the practice's name, phone
and email) and an "if you did not ask for this" line, the patient's
personal data stays out of every variant, and every page and email says in
the same words who sends the portal invitation."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from requests_app import services
from requests_app.models import OutboundEmail, ResetRequest
from requests_app.outbox.render import build_message

from .conftest import UNMISTAKABLE_PATIENT, valid_form_data
from .factories import OutboundEmailFactory, ResetRequestFactory
from .support.mail_parts import everything, html_part, sent, text_part

pytest_plugins = ["tests.support.smtp"]
pytestmark = pytest.mark.django_db

PATIENT = UNMISTAKABLE_PATIENT
# Every way a message could show the date of birth, phone, details, last name.
NEVER_TO_THE_PATIENT = ["1975", "Quattlebaum", "+15559871234", "555-987-1234", "5559871234", "987-1234", "firmware"]
# Who sends the invitation, in the one sentence every page and email uses.
INVITATION = "We send the invitation through the portal, so the email comes from Patient Fusion on our behalf."


# Every header but the generated ones (a Message-ID's timestamp or the Date
# may contain "1975" by chance; neither carries the patient's data).
GENERATED = ("content-type", "message-id", "date")


def to_patient() -> Any:
    [message] = [m for m in mail.outbox if m.to == [PATIENT["email"]]]
    return message


@pytest.fixture
def acknowledgment(submit: Any) -> Any:
    response = submit(valid_form_data(**PATIENT))
    assert response.status_code == 303
    return to_patient()


# --- The sender -----------------------------------------------------------------------


def test_it_sends_as_the_practice_by_name(acknowledgment, settings):
    sender = sent(acknowledgment)["From"].addresses

    assert [(a.display_name, a.addr_spec) for a in sender] == [(settings.PRACTICE_NAME, settings.DEFAULT_FROM_EMAIL)]


def test_it_quotes_a_practice_name_that_needs_it(settings):
    settings.PRACTICE_NAME = "Smith, Jones & Ruiz"
    message = build_message(OutboundEmailFactory())

    [sender] = sent(message)["From"].addresses
    assert sender.display_name == "Smith, Jones & Ruiz"
    assert sender.addr_spec == settings.DEFAULT_FROM_EMAIL


def test_it_writes_a_practice_name_that_is_not_ascii(settings):
    settings.PRACTICE_NAME = "Clínica Peña"
    message = build_message(OutboundEmailFactory())

    assert str(message.message()["From"]).isascii()  # encoded on the way out
    [sender] = sent(message)["From"].addresses
    assert sender.display_name == "Clínica Peña"


def test_it_keeps_a_sender_that_already_has_a_display_name(settings):
    settings.DEFAULT_FROM_EMAIL = "Front desk <resets@clinic.example>"
    message = build_message(OutboundEmailFactory())

    [sender] = sent(message)["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Front desk", "resets@clinic.example")


def test_it_gives_staff_emails_the_practice_s_name_too(acknowledgment, settings):
    [notice] = [m for m in mail.outbox if m.to == [settings.STAFF_NOTIFY_EMAIL]]

    [sender] = sent(notice)["From"].addresses
    assert sender.display_name == settings.PRACTICE_NAME


def test_it_keeps_the_bare_address_as_the_envelope_sender(real_smtp, settings):
    build_message(OutboundEmailFactory(to="p@example.com")).send()

    [received] = real_smtp.wait_for_messages("p@example.com")
    assert received.mail_from == settings.DEFAULT_FROM_EMAIL


# --- The end of the acknowledgment ----------------------------------------------------------


def test_it_signs_the_acknowledgment_with_the_practice_s_name_phone_and_email(acknowledgment, settings):
    text = text_part(acknowledgment)

    sign_off = text.split("Kind regards,", 1)[1].split("\n-- \n", 1)[0]
    assert f"The front desk team at {settings.PRACTICE_NAME}" in sign_off
    assert "(555) 010-0199" in sign_off
    assert settings.PRACTICE_CONTACT_EMAIL in sign_off
    html = html_part(acknowledgment).split("Kind regards,", 1)[1]
    assert '<a href="tel:+15550100199"' in html
    assert f'<a href="mailto:{settings.PRACTICE_CONTACT_EMAIL}"' in html


def test_it_asks_whoever_did_not_ask_for_the_reset_to_call_or_reply(acknowledgment):
    line = "If you did not ask us to reset your portal access, call us at (555) 010-0199 or reply to this email."

    assert line in text_part(acknowledgment)
    html = html_part(acknowledgment)
    assert 'If you did not ask us to reset your portal access, call us at <a href="tel:+15550100199"' in html
    # "Reply" reaches the front desk.
    assert sent(acknowledgment)["Reply-To"]


@pytest.mark.parametrize(
    ("kind", "traits"),
    [("resolved", {"resolved": True}), ("closed", {"closed": True, "close_reason": "unverified"})],
)
def test_it_ends_the_other_patient_emails_the_same_way(kind, traits, settings):
    message = build_message(OutboundEmailFactory(reset=ResetRequestFactory(**traits), kind=kind))

    text = text_part(message)
    assert "If you did not ask us to reset your portal access" in text
    assert "Kind regards," in text
    assert settings.PRACTICE_CONTACT_EMAIL in text.split("Kind regards,", 1)[1]


# --- Minimum necessary, in every variant --------------------------------------------------


@pytest.fixture
def started(acknowledgment: Any, staff_user: Any) -> ResetRequest:
    request = ResetRequest.objects.get()
    services.reset_start(reset_id=request.pk, actor=staff_user)
    services.reset_record_identity_check(reset_id=request.pk, actor=staff_user, dob=True, phone=True, email=False)
    mail.outbox.clear()
    return request


def test_it_keeps_personal_data_out_of_the_acknowledgment_with_its_new_lines(acknowledgment):
    content = everything(acknowledgment, leave_out=GENERATED)

    for value in NEVER_TO_THE_PATIENT:
        assert value not in content


@pytest.mark.parametrize("outcome", ["reinvited", "email_corrected", "self_service", "other"])
def test_it_keeps_personal_data_out_of_every_resolution(
    started, staff_user, outcome, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.reset_resolve(reset_id=started.pk, actor=staff_user, outcome=outcome, note="Called 555-987-1234")

    content = everything(to_patient(), leave_out=GENERATED)
    for value in [*NEVER_TO_THE_PATIENT, "Called"]:
        assert value not in content


@pytest.mark.parametrize("reason", ["unverified", "duplicate", "withdrawn", "other"])
def test_it_keeps_personal_data_out_of_every_closure(started, staff_user, reason, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.reset_close(reset_id=started.pk, actor=staff_user, reason=reason, note="Voicemail 555-987-1234")

    content = everything(to_patient(), leave_out=GENERATED)
    for value in [*NEVER_TO_THE_PATIENT, "Voicemail"]:
        assert value not in content


# --- Who sends the invitation ----------------------------------------------------------------


def test_it_says_who_sends_the_invitation_in_the_acknowledgment(acknowledgment):
    assert INVITATION in text_part(acknowledgment)
    assert INVITATION in html_part(acknowledgment)


@pytest.mark.parametrize("outcome", ["reinvited", "email_corrected"])
def test_it_says_who_sends_the_invitation_in_the_resolution_in_the_same_words(outcome):
    reset = ResetRequestFactory(resolved=True, outcome=outcome)
    message = build_message(OutboundEmailFactory(reset=reset, kind=OutboundEmail.Kind.RESOLVED))

    for part in (text_part(message), html_part(message)):
        assert INVITATION in part
        assert "not from us" not in part


def test_it_says_who_sends_the_invitation_on_the_confirmation_and_the_status_page(client):
    confirmation = client.get("/reset/submitted/K7QM-3XTD/").content.decode()
    status = client.get(ResetRequestFactory(resolved=True).get_status_url()).content.decode()

    assert INVITATION in confirmation
    assert INVITATION in status


def test_it_builds_a_well_formed_message_id_when_the_sender_has_a_display_name(settings):
    settings.DEFAULT_FROM_EMAIL = "Front desk <resets@clinic.example>"
    email = OutboundEmailFactory()

    assert email.message_id.endswith("@clinic.example>")
    assert email.message_id.count("<") == 1 and email.message_id.count(">") == 1
