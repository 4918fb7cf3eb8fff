"""Messages to the patient from the practice's templates: staff choose one,
its placeholders are filled from the practice's settings, the text is
stored as sent, emailed in the request's language and shown on the status
page. A later edit of the template changes none of that. Only a practice
manager edits templates, and only the known placeholders get through.
Beside the messages, the status page promises the request's own due time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.utils import timezone

from requests_app.admin.messages import SendMessageForm
from requests_app.exceptions import ConcurrentChange, TransitionNotAllowed, WorkflowError
from requests_app.models import PLACEHOLDERS, MessageTemplate, OutboundEmail, PatientMessage, RequestEvent
from requests_app.outbox.render import build_message
from requests_app.services import resets_purge_expired
from requests_app.services.messages import message_text, placeholder_values, reset_send_message

from .conftest import UNMISTAKABLE_PATIENT
from .factories import ResetRequestFactory, StaffUserFactory
from .support.mail_parts import everything, html_part, sent, text_part

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
# Every way a message could show the patient's date of birth, phone, details or last name.
NEVER_TO_THE_PATIENT = ["1975", "Quattlebaum", "+15559871234", "555-987-1234", "5559871234", "987-1234", "firmware"]

CALLED = "We tried to call you"  # one of the templates migration 0009 adds
CALLED_EN = "We tried to call you about your request {ref} to reset your Patient Fusion access."
CALLED_ES = "Intentamos llamarle por su solicitud {ref} para restablecer su acceso a Patient Fusion."


@pytest.fixture(autouse=True)
def _practice(settings: Any) -> None:
    settings.PRACTICE_NAME = "IFM"
    settings.PRACTICE_PHONE = "+15550100199"
    settings.PRACTICE_CONTACT_EMAIL = "frontdesk@ifm.example"
    settings.PORTAL_NAME = "Patient Fusion"
    settings.SITE_URL = "https://portal.ifm.example"
    settings.PRACTICE_TIME_ZONE = "America/New_York"


def template(title: str = CALLED) -> MessageTemplate:
    return MessageTemplate.objects.get(title=title)


def patient_request(**fields: Any) -> Any:
    """An open request of the patient whose details appear nowhere else."""
    details = {key: value for key, value in UNMISTAKABLE_PATIENT.items() if key != "phone"}
    return ResetRequestFactory(**{**details, "phone": "+15559871234", "in_progress": True, **fields})


def send(reset: Any, actor: Any, django_capture_on_commit_callbacks: Any, title: str = CALLED) -> PatientMessage:
    """Send a message as the request page does, and run what follows the
    commit (Celery is eager: the email is sent into mail.outbox)."""
    with django_capture_on_commit_callbacks(execute=True):
        return reset_send_message(
            reset_id=reset.pk, actor=actor, template_id=template(title).pk, expected_status=reset.status
        )


# Every header but the generated ones (the Message-ID and the Date).
GENERATED = ("content-type", "message-id", "date")


def manager(*actions: str) -> Any:
    """A practice manager: staff with the given permissions on templates."""
    user = StaffUserFactory(username="manager")
    codenames = [f"{action}_messagetemplate" for action in actions]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def template_post(obj: MessageTemplate, **changes: str) -> dict[str, str]:
    data = {
        "title": obj.title,
        "body_en": obj.body_en,
        "body_es": obj.body_es,
        "is_active": "on" if obj.is_active else "",
        "position": str(obj.position),
    }
    data.update(changes)
    return data


# --- The text -------------------------------------------------------------------------


def test_it_has_a_value_for_each_placeholder_and_no_other():
    assert placeholder_values(ResetRequestFactory()).keys() == PLACEHOLDERS.keys()


def test_it_fills_the_placeholders_from_the_practice_settings_in_the_request_language():
    reset = ResetRequestFactory(language="es")

    text = message_text(template("Please call us back"), reset)

    assert text == (
        "Por favor, llame a IFM al (555) 010-0199 para que podamos verificar su identidad "
        "y restablecer su acceso a Patient Fusion."
    )
    assert message_text(template(), reset, language="en").startswith(CALLED_EN.format(ref=reset.reference))


@pytest.mark.parametrize(
    "body",
    ["Call {doctor_name}.", "Call {}.", "Request {reference.__class__}.", "Request {reference[0]}.", "Oops {"],
)
def test_it_refuses_to_fill_a_template_that_got_past_the_admin(body):
    reset = ResetRequestFactory()
    broken = template()
    MessageTemplate.objects.filter(pk=broken.pk).update(body_en=body)  # as a script might
    broken.refresh_from_db()

    with pytest.raises(WorkflowError, match="has a placeholder that cannot be filled in"):
        message_text(broken, reset)
    with pytest.raises(WorkflowError, match="has a placeholder that cannot be filled in"):
        reset_send_message(reset_id=reset.pk, actor=None, template_id=broken.pk)
    assert not PatientMessage.objects.exists()
    assert not OutboundEmail.objects.exists()
    assert broken not in [offered for offered, _ in SendMessageForm(reset).previews()]


# --- Sending --------------------------------------------------------------------------


def test_it_stores_the_message_as_sent_and_records_it_on_the_timeline_with_the_actor(
    staff, django_capture_on_commit_callbacks
):
    reset = patient_request()

    message = send(reset, staff, django_capture_on_commit_callbacks)

    assert message.body.startswith(CALLED_EN.format(ref=reset.reference))
    assert (message.reset, message.template, message.language, message.sent_by) == (reset, template(), "en", staff)
    event = reset.events.get(kind=RequestEvent.Kind.MESSAGE)
    assert event.actor == staff
    assert event.message == f"{CALLED}: {message.body}"
    assert reset.events.get(kind=RequestEvent.Kind.EMAIL_QUEUED).actor == staff
    outbound = reset.emails.get()
    assert (outbound.kind, outbound.patient_message, outbound.to) == ("message", message, reset.email)
    assert outbound.state == OutboundEmail.State.SENT


def test_it_emails_the_message_in_english_with_the_reference_and_the_status_link(
    staff, django_capture_on_commit_callbacks
):
    reset = patient_request(language="en")

    send(reset, staff, django_capture_on_commit_callbacks)

    [message] = mail.outbox
    assert message.to == [UNMISTAKABLE_PATIENT["email"]]
    assert sent(message)["Content-Language"] == "en"
    assert message.subject == f"IFM: a message about your portal access request ({reset.reference})"
    link = "https://portal.ifm.example" + reset.get_status_url()
    for part in (text_part(message), html_part(message)):
        assert CALLED_EN.format(ref=reset.reference) in part
        assert "Please call us back at (555) 010-0199." in part
        assert "Spam or Junk" in part
        assert "frontdesk@ifm.example" in part
    assert link in text_part(message)
    assert f'href="{link}"' in html_part(message)


def test_it_emails_the_message_in_spanish_to_a_spanish_request(staff, django_capture_on_commit_callbacks):
    reset = patient_request(language="es")

    send(reset, staff, django_capture_on_commit_callbacks)

    [message] = mail.outbox
    assert sent(message)["Content-Language"] == "es"
    assert message.subject == f"IFM: un mensaje sobre su solicitud de acceso al portal ({reset.reference})"
    for part in (text_part(message), html_part(message)):
        assert CALLED_ES.format(ref=reset.reference) in part
        assert "Tenemos un mensaje para usted" in part
        assert "Estado de su solicitud:" in part
        assert CALLED_EN.format(ref=reset.reference) not in part


def test_it_keeps_the_date_of_birth_phone_details_and_last_name_out_of_the_email(
    staff, django_capture_on_commit_callbacks
):
    send(patient_request(), staff, django_capture_on_commit_callbacks)

    content = everything(mail.outbox[0], leave_out=GENERATED)
    for value in NEVER_TO_THE_PATIENT:
        assert value not in content


def test_it_refuses_a_template_no_longer_offered(staff):
    reset = patient_request()
    MessageTemplate.objects.filter(title=CALLED).update(is_active=False)

    for template_id in (template().pk, 999_999):
        with pytest.raises(WorkflowError, match=r"^That message is no longer offered\.$"):
            reset_send_message(reset_id=reset.pk, actor=staff, template_id=template_id)

    assert not PatientMessage.objects.exists()
    assert not reset.events.exists()
    assert not OutboundEmail.objects.exists()


@pytest.mark.parametrize("traits", [{"resolved": True}, {"closed": True}])
def test_it_refuses_a_request_that_has_ended(staff, traits):
    reset = ResetRequestFactory(**traits)

    with pytest.raises(TransitionNotAllowed, match=f"^{reset.reference} has ended; messages go only"):
        reset_send_message(reset_id=reset.pk, actor=staff, template_id=template().pk)

    assert not PatientMessage.objects.exists()
    assert not OutboundEmail.objects.exists()


def test_it_refuses_when_the_request_changed_since_the_page_was_shown(staff):
    reset = ResetRequestFactory(waiting=True)

    with pytest.raises(ConcurrentChange, match="is now waiting on patient"):
        reset_send_message(reset_id=reset.pk, actor=staff, template_id=template().pk, expected_status="in_progress")

    assert not PatientMessage.objects.exists()


def test_it_sends_to_a_request_waiting_on_the_patient(staff, django_capture_on_commit_callbacks):
    reset = ResetRequestFactory(waiting=True)

    send(reset, staff, django_capture_on_commit_callbacks)

    assert len(mail.outbox) == 1


# --- The status page ----------------------------------------------------------------------


def test_the_status_page_shows_the_message_in_english(client, staff, django_capture_on_commit_callbacks):
    reset = patient_request(language="en")
    send(reset, staff, django_capture_on_commit_callbacks)

    page = client.get(reset.get_status_url()).content.decode()

    assert "Messages from us" in page
    assert CALLED_EN.format(ref=reset.reference) in page


def test_the_status_page_shows_the_message_in_spanish_whatever_the_browser_asks(
    client, staff, django_capture_on_commit_callbacks
):
    reset = patient_request(language="es")
    send(reset, staff, django_capture_on_commit_callbacks)

    page = client.get(reset.get_status_url(), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "Mensajes del consultorio" in page
    assert CALLED_ES.format(ref=reset.reference) in page
    assert "Messages from us" not in page


def test_the_status_page_lists_the_messages_oldest_first_with_their_dates(
    client, staff, time_machine, django_capture_on_commit_callbacks
):
    reset = patient_request()
    time_machine.move_to(datetime(2026, 6, 16, 10, 5, tzinfo=NEW_YORK), tick=False)
    send(reset, staff, django_capture_on_commit_callbacks, title="Please check your email address")
    time_machine.move_to(datetime(2026, 6, 17, 14, 30, tzinfo=NEW_YORK), tick=False)
    send(reset, staff, django_capture_on_commit_callbacks)

    page = client.get(reset.get_status_url()).content.decode()

    first, second = page.index("Please check that the email address"), page.index("We tried to call you")
    assert first < second
    assert "June 16, 2026, 10:05 AM" in page
    assert 'datetime="2026-06-17T18:30:00Z"' in page


def test_the_status_page_shows_no_messages_section_without_messages(client):
    reset = ResetRequestFactory()

    page = client.get(reset.get_status_url()).content.decode()

    assert "Messages from us" not in page


def test_the_status_page_shows_no_personal_data_with_a_message(client, staff, django_capture_on_commit_callbacks):
    reset = patient_request()
    send(reset, staff, django_capture_on_commit_callbacks)

    page = client.get(reset.get_status_url()).content.decode()

    for value in [*NEVER_TO_THE_PATIENT, "Zebulon", "zq.private"]:
        assert value not in page


# --- The status page's promise: the request's own due time -------------------------------

MONDAY_1530 = datetime(2026, 6, 15, 15, 30, tzinfo=NEW_YORK)


@pytest.mark.parametrize("traits", [{}, {"in_progress": True}])
def test_the_status_page_promises_the_request_own_due_time_while_its_clock_runs(client, time_machine, traits):
    time_machine.move_to(datetime(2026, 6, 12, 16, 30, tzinfo=NEW_YORK), tick=False)
    reset = ResetRequestFactory(due_at=MONDAY_1530, **traits)

    page = client.get(reset.get_status_url()).content.decode()

    assert "We aim to reset your portal access by" in page
    assert "Monday, June 15, 3:30 PM" in page
    assert 'datetime="2026-06-15T19:30:00Z"' in page
    assert "hours on working days" not in page


def test_the_status_page_promises_the_due_time_in_spanish_to_a_spanish_request(client, time_machine):
    time_machine.move_to(datetime(2026, 6, 12, 16, 30, tzinfo=NEW_YORK), tick=False)
    reset = ResetRequestFactory(due_at=MONDAY_1530, language="es")

    page = client.get(reset.get_status_url()).content.decode()

    assert "Nuestro objetivo es restablecer su acceso al portal" in page
    assert "lunes 15 de junio" in page


@pytest.mark.parametrize("traits", [{"waiting": True}, {"resolved": True}, {"closed": True}])
def test_the_status_page_promises_no_time_while_waiting_on_the_patient_or_once_ended(client, time_machine, traits):
    time_machine.move_to(datetime(2026, 6, 12, 16, 30, tzinfo=NEW_YORK), tick=False)
    reset = ResetRequestFactory(due_at=MONDAY_1530, **traits)

    page = client.get(reset.get_status_url()).content.decode()

    assert "We aim to" not in page
    assert "June 15" not in page


def test_the_status_page_apologises_instead_of_promising_a_time_gone_by(client, time_machine):
    time_machine.move_to(datetime(2026, 6, 16, 9, 0, tzinfo=NEW_YORK), tick=False)
    reset = ResetRequestFactory(due_at=MONDAY_1530, in_progress=True)

    page = client.get(reset.get_status_url()).content.decode()

    assert "It is taking us longer than we aimed for" in page
    assert "We aim to" not in page


# --- A later edit of the template ---------------------------------------------------------


def test_a_later_edit_changes_neither_the_message_nor_the_status_page_nor_the_email_still_queued(client, staff):
    reset = patient_request()
    # Sent, but its email still pending in the outbox (the broker never got it).
    message = reset_send_message(reset_id=reset.pk, actor=staff, template_id=template().pk)
    as_sent = message.body
    client.force_login(manager("view", "change"))

    response = client.post(
        f"/admin/requests_app/messagetemplate/{template().pk}/change/",
        template_post(template(), body_en="Something new about {reference}.", body_es="Algo nuevo."),
    )

    assert response.status_code == 302
    assert template().body_en == "Something new about {reference}."
    message.refresh_from_db()
    assert message.body == as_sent
    page = client.get(reset.get_status_url()).content.decode()
    assert as_sent in page
    assert "Something new" not in page
    pending = reset.emails.get()
    assert pending.state == OutboundEmail.State.PENDING
    email_then = build_message(pending)
    assert as_sent in email_then.body
    assert "Something new" not in everything(email_then, leave_out=GENERATED)


def test_a_message_email_without_its_message_fails_rather_than_send_an_empty_message():
    reset = patient_request()
    outbound = OutboundEmail.objects.create(
        reset=reset, kind=OutboundEmail.Kind.MESSAGE, to=reset.email, created_at=timezone.now()
    )

    with pytest.raises(ValueError, match="without its message"):
        build_message(outbound)


# --- Templates in the admin ---------------------------------------------------------------


def test_the_template_form_lists_the_placeholders_allowed(client):
    client.force_login(manager("view", "change"))

    page = client.get(f"/admin/requests_app/messagetemplate/{template().pk}/change/").content.decode()

    for name in PLACEHOLDERS:
        assert "{" + name + "}" in page


def test_the_template_list_shows_title_offered_and_position(client):
    client.force_login(manager("view"))

    response = client.get("/admin/requests_app/messagetemplate/")

    assert response.status_code == 200
    assert [str(t) for t in response.context["cl"].result_list][:2] == [CALLED, "Please call us back"]
    headers = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', response.content.decode())
    assert headers == ["title", "is_active", "position"]
    assert "Offered to staff" in response.content.decode()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("Call {doctor_name} at {practice_phone}.", "Unknown placeholder {doctor_name}"),
        ("Call us at {practice_phone", "Unbalanced braces"),
        ("Request {reference!r}.", "Write placeholders plainly"),
    ],
)
def test_the_template_form_refuses_an_unknown_placeholder_and_saves_nothing(client, body, error):
    client.force_login(manager("view", "change"))
    before = template().body_es

    response = client.post(
        f"/admin/requests_app/messagetemplate/{template().pk}/change/", template_post(template(), body_es=body)
    )

    assert response.status_code == 200
    assert error in response.content.decode()
    assert template().body_es == before


def test_a_manager_with_the_add_permission_adds_a_template(client):
    client.force_login(manager("view", "add"))

    response = client.post(
        "/admin/requests_app/messagetemplate/add/",
        {
            "title": "We could not reach you",
            "body_en": "We could not reach you about {reference}; call {practice_phone}.",
            "body_es": "No pudimos localizarle por {reference}; llame al {practice_phone}.",
            "is_active": "on",
            "position": "9",
        },
    )

    assert response.status_code == 302
    assert MessageTemplate.objects.get(title="We could not reach you").position == 9


def test_deleting_a_template_keeps_the_messages_sent_with_it(client, staff, django_capture_on_commit_callbacks):
    reset = patient_request()
    message = send(reset, staff, django_capture_on_commit_callbacks)
    client.force_login(manager("view", "delete"))

    response = client.post(f"/admin/requests_app/messagetemplate/{template().pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not MessageTemplate.objects.filter(title=CALLED).exists()
    message.refresh_from_db()
    assert message.template is None
    assert message.body.startswith(CALLED_EN.format(ref=reset.reference))
    assert message.body in client.get(reset.get_status_url()).content.decode()


# --- The form staff send with -----------------------------------------------------------


def test_the_send_form_offers_the_active_templates_by_title_with_what_the_patient_reads():
    reset = ResetRequestFactory(language="es", in_progress=True)
    MessageTemplate.objects.filter(title="Please call us back").update(is_active=False)

    form = SendMessageForm(reset)

    titles = [title for title in MessageTemplate.objects.filter(is_active=True).values_list("title", flat=True)]
    assert [str(label) for _, label in form.fields["template"].choices] == titles
    assert "Please call us back" not in titles
    assert [(t.title, text) for t, text in form.previews()] == [
        (t.title, message_text(t, reset, "es")) for t in MessageTemplate.objects.filter(is_active=True)
    ]
    assert form.previews()[0][1].startswith(CALLED_ES.format(ref=reset.reference))
    assert form["expected_status"].value() == "in_progress"
    assert 'type="radio"' in str(form["template"])


def test_the_send_form_asks_for_a_choice():
    form = SendMessageForm(ResetRequestFactory(), data={"expected_status": "new"})

    assert not form.is_valid()
    assert form.errors["template"] == ["Choose the message to send."]


def test_the_send_form_refuses_a_template_withdrawn_since_the_page_was_shown():
    reset = ResetRequestFactory()
    chosen = template()
    MessageTemplate.objects.filter(pk=chosen.pk).update(is_active=False)

    form = SendMessageForm(reset, data={"template": str(chosen.pk), "expected_status": "new"})

    assert not form.is_valid()
    assert form.errors["template"] == ["That message is no longer offered."]


def test_the_send_form_gives_the_service_what_it_needs(staff):
    reset = ResetRequestFactory()
    form = SendMessageForm(reset, data={"template": str(template().pk), "expected_status": "new"})

    assert form.is_valid(), form.errors
    message = reset_send_message(
        reset_id=reset.pk,
        actor=staff,
        template_id=form.cleaned_data["template"].pk,
        expected_status=form.cleaned_data["expected_status"],
    )
    assert message.template == template()


# --- Retention ------------------------------------------------------------------------------


def test_the_purge_erases_a_request_with_messages_and_keeps_their_text(
    staff, settings, django_capture_on_commit_callbacks
):
    reset = patient_request()
    message = send(reset, staff, django_capture_on_commit_callbacks)
    reset.__class__.objects.filter(pk=reset.pk).update(
        status="closed",
        is_open=False,
        close_reason="withdrawn",
        ended_at=timezone.now() - timedelta(days=settings.RETENTION_DAYS + 1),
    )

    assert resets_purge_expired() == 1

    reset.refresh_from_db()
    assert reset.personal_data_purged_at is not None
    assert reset.email == ""
    assert reset.emails.get().to == ""
    message.refresh_from_db()
    assert message.body.startswith(CALLED_EN.format(ref=reset.reference))


def test_a_message_email_sent_again_from_the_outbox_carries_the_same_text(
    staff_client, staff, django_capture_on_commit_callbacks
):
    reset = patient_request()
    message = send(reset, staff, django_capture_on_commit_callbacks)
    first = OutboundEmail.objects.get(reset=reset, kind=OutboundEmail.Kind.MESSAGE)
    OutboundEmail.objects.filter(pk=first.pk).update(state=OutboundEmail.State.FAILED)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            "/admin/requests_app/outboundemail/", {"action": "send_again", "_selected_action": [first.pk]}
        )

    again = OutboundEmail.objects.filter(reset=reset, kind=OutboundEmail.Kind.MESSAGE).exclude(pk=first.pk).get()
    assert again.patient_message == message
    assert again.state == OutboundEmail.State.SENT
    [delivered] = mail.outbox
    assert message.body in text_part(delivered)
