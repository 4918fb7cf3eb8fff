"""The front desk's request page: a straightforward request verified and
resolved in one form, the way on to the next request, the patient's phone
as links, earlier requests of the same patient, views hidden by default,
reopen, resume and the language, as a member of the staff group does them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from requests_app.models import MessageTemplate, OutboundEmail, PatientMessage, RequestEvent, ResetRequest

from .factories import ResetRequestFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

Status = ResetRequest.Status
CHANGELIST = "/admin/requests_app/resetrequest/"


def url(rr: ResetRequest, name: str = "change") -> str:
    return f"{CHANGELIST}{rr.pk}/{name}/"


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def events_of(rr: ResetRequest) -> list[tuple[str, str, str]]:
    return list(
        rr.events.exclude(kind__in=[RequestEvent.Kind.VIEWED, RequestEvent.Kind.EMAIL_QUEUED])
        .order_by("created_at", "pk")
        .values_list("kind", "from_status", "to_status")
    )


def verify(staff_client: Any, rr: ResetRequest, **fields: str) -> Any:
    data = {"expected_status": rr.status, "outcome": "reinvited", "then": "stay", **fields}
    return staff_client.post(url(rr, "verify"), data)


# --- One form finishes a straightforward request -----------------------------


def test_the_page_of_a_new_request_offers_the_one_form_with_nothing_ticked(staff_client):
    rr = ResetRequestFactory()

    page = staff_client.get(url(rr)).content.decode()

    form = page[page.index('action="' + url(rr, "verify") + '"') :]
    form = form[: form.index("</form>")]
    for name in ("dob", "phone", "email"):
        box = re.search(rf'<input[^>]*name="{name}"[^>]*>', form)
        assert box is not None and "checked" not in box.group(0)
    # The outcome is the button pressed, one per outcome; going on to the
    # next request is on unless unticked.
    for value, _label in ResetRequest.Outcome.choices:
        assert re.search(rf'<button type="submit" class="button[^"]*" name="outcome" value="{value}"', form)
    assert re.search(r'<input type="checkbox" name="then" value="next" id="rr-then-next" checked>', form)


def test_it_starts_verifies_and_resolves_a_new_request_in_one_submit(staff_client, staff):
    rr = ResetRequestFactory()

    response = verify(staff_client, rr, dob="on", phone="on")

    assert response.status_code == 302
    assert response["Location"] == url(rr)
    rr.refresh_from_db()
    assert rr.status == Status.RESOLVED
    assert rr.outcome == "reinvited"
    assert rr.assignee == staff
    assert (rr.identity_dob_matched, rr.identity_phone_matched, rr.identity_email_matched) == (True, True, False)
    assert rr.identity_verified_by == staff
    assert events_of(rr) == [
        ("status", "new", "in_progress"),
        ("assigned", "", ""),
        ("identity", "", ""),
        ("status", "in_progress", "resolved"),
    ]
    kinds = [RequestEvent.Kind.STATUS, RequestEvent.Kind.ASSIGNED, RequestEvent.Kind.IDENTITY]
    moves = rr.events.filter(kind__in=kinds)
    assert set(moves.values_list("actor", flat=True)) == {staff.pk}
    assert rr.emails.filter(kind=OutboundEmail.Kind.RESOLVED).count() == 1
    assert messages_of(response) == [f"{rr.reference} is verified and resolved; the patient is emailed."]


def test_without_a_second_identifier_it_explains_and_changes_nothing(staff_client):
    rr = ResetRequestFactory()
    before = events_of(rr)

    response = verify(staff_client, rr, dob="on", note="called at 10")

    assert response.status_code == 200
    page = response.content.decode()
    assert "date of birth and at least one more identifier" in page
    # What was typed comes back: the box ticked, the outcome chosen, the note.
    assert re.search(r'<input[^>]*name="dob"[^>]*checked', page)
    assert re.search(r'<input[^>]*value="reinvited"[^>]*checked', page)
    assert "called at 10" in page
    rr.refresh_from_db()
    assert rr.status == Status.NEW
    assert rr.identity_verified_at is None
    assert events_of(rr) == before
    assert not rr.emails.exists()


def test_without_an_outcome_it_asks_for_one_and_changes_nothing(staff_client):
    rr = ResetRequestFactory()

    response = staff_client.post(url(rr, "verify"), {"expected_status": "new", "dob": "on", "phone": "on"})

    assert response.status_code == 200
    assert "Choose the outcome of the reset." in response.content.decode()
    rr.refresh_from_db()
    assert rr.status == Status.NEW
    assert rr.identity_verified_at is None


def test_a_request_someone_else_moved_meanwhile_is_not_resolved_behind_their_back(staff_client):
    rr = ResetRequestFactory(in_progress=True)

    response = verify(staff_client, rr, dob="on", phone="on", expected_status="new")

    assert response.status_code == 302
    rr.refresh_from_db()
    assert rr.status == Status.IN_PROGRESS
    assert rr.identity_verified_at is None
    assert "changed by someone else" in messages_of(response)[0]


def test_once_the_identity_is_checked_the_page_offers_the_outcome_alone(staff_client):
    rr = ResetRequestFactory(in_progress=True, identity_checked=True)

    page = staff_client.get(url(rr)).content.decode()

    assert 'action="' + url(rr, "verify") + '"' not in page
    assert 'action="' + url(rr, "resolve") + '"' in page
    assert "Resolve as" in page


# --- … and open the next request ----------------------------------------------


def test_and_open_the_next_request_goes_to_the_oldest_unassigned_or_mine(staff_client, staff):
    now = timezone.now()
    someone_else = StaffUserFactory(username="other")
    done = ResetRequestFactory(submitted_at=now - timedelta(hours=9))
    ResetRequestFactory(submitted_at=now - timedelta(hours=8), assignee=someone_else)
    ResetRequestFactory(submitted_at=now - timedelta(hours=7), waiting=True)
    mine = ResetRequestFactory(submitted_at=now - timedelta(hours=6), in_progress=True, assignee=staff)
    ResetRequestFactory(submitted_at=now - timedelta(hours=5))

    response = verify(staff_client, done, dob="on", email="on", then="next")

    assert response.status_code == 302
    assert response["Location"] == url(mine)
    done.refresh_from_db()
    assert done.status == Status.RESOLVED


def test_the_last_request_of_the_queue_leads_back_to_the_list(staff_client):
    rr = ResetRequestFactory(in_progress=True, identity_checked=True)

    response = staff_client.post(
        url(rr, "resolve"), {"expected_status": "in_progress", "outcome": "notes_signed", "then": "next"}
    )

    assert response["Location"] == CHANGELIST
    assert "No other request is waiting in the queue." in messages_of(response)
    rr.refresh_from_db()
    assert rr.status == Status.RESOLVED
    assert rr.outcome == "notes_signed"


def test_closing_and_open_the_next_request(staff_client):
    rr = ResetRequestFactory()
    following = ResetRequestFactory()

    response = staff_client.post(
        url(rr, "close"), {"expected_status": "new", "reason": "duplicate", "note": "", "then": "next"}
    )

    assert response["Location"] == url(following)
    rr.refresh_from_db()
    assert rr.status == Status.CLOSED


def test_the_page_links_to_the_next_request_with_its_shortcut(staff_client):
    rr = ResetRequestFactory(submitted_at=timezone.now() - timedelta(hours=2))
    following = ResetRequestFactory()

    page = staff_client.get(url(rr)).content.decode()

    assert re.search(rf'<a class="rr-next" href="{url(following)}" data-shortcut="j">', page)


# --- What the page shows ---------------------------------------------------------


def test_the_patients_phone_is_a_call_and_a_text_link_in_one_format(staff_client):
    rr = ResetRequestFactory(phone="+15552013344")

    page = staff_client.get(url(rr)).content.decode()

    assert '<a class="rr-call" href="tel:+15552013344">Call</a>' in page
    assert '<a class="rr-call" href="sms:+15552013344">Text</a>' in page
    assert "(555) 201-3344" in page
    assert "+15552013344</" not in page


def test_the_date_of_birth_reads_the_same_everywhere_on_the_page(staff_client):
    rr = ResetRequestFactory(date_of_birth="1980-04-23")

    page = staff_client.get(url(rr)).content.decode()

    assert page.count("Apr 23, 1980") >= 2
    assert "1980-04-23" not in page


def test_earlier_requests_of_the_same_patient_are_listed(staff_client):
    now = timezone.now()
    earlier = ResetRequestFactory(
        email="pat@example.com", date_of_birth="1970-01-02", resolved=True, submitted_at=now - timedelta(days=40)
    )
    namesake = ResetRequestFactory(email="pat@example.com", date_of_birth="1999-09-09", closed=True)
    rr = ResetRequestFactory(email="pat@example.com", date_of_birth="1970-01-02")

    page = staff_client.get(url(rr)).content.decode()

    listed = page[page.index('id="earlier-requests"') :]
    assert earlier.reference in listed
    assert "resolved: re-invited to the portal" in listed
    assert namesake.reference not in page


def test_page_views_are_recorded_but_hidden_until_asked_for(staff_client, staff):
    rr = ResetRequestFactory()
    staff_client.get(url(rr))
    staff_client.get(url(rr))

    page = staff_client.get(url(rr)).content.decode()

    assert rr.events.filter(kind=RequestEvent.Kind.VIEWED).count() == 3
    assert page.count('<tr class="rr-kind-viewed">') == 3
    assert re.search(r'<input type="checkbox" id="rr-show-views">', page)
    assert "Show page views (3)" in page


def test_an_ended_request_has_no_alarm_about_its_identity_check(staff_client):
    rr = ResetRequestFactory(closed=True, close_reason="spam")

    page = staff_client.get(url(rr)).content.decode()

    assert "rr-warn" not in page
    assert "No identity check was recorded." in page
    assert "Closed" in page and "Spam" in page


def test_a_new_request_offers_no_separate_assign_to_me(staff_client):
    rr = ResetRequestFactory()

    page = staff_client.get(url(rr)).content.decode()

    assert "Assign to me" not in page
    assert 'action="' + url(rr, "start") + '"' in page


def test_the_main_actions_carry_visible_shortcuts(staff_client):
    rr = ResetRequestFactory(in_progress=True)

    page = staff_client.get(url(rr)).content.decode()

    for key in ("d", "p", "e", "1", "5", "w", "c", "m"):
        assert f'data-shortcut="{key}"' in page
        assert f"<kbd>{key}</kbd>" in page or f">{key}</kbd>" in page
    assert "/static/requests_app/shortcuts.js" in page


# --- Resume, reopen, language ------------------------------------------------------


def test_a_waiting_request_goes_back_to_in_progress_with_its_own_button(staff_client):
    rr = ResetRequestFactory(in_progress=True)
    staff_client.post(url(rr, "wait"), {"expected_status": "in_progress", "note": "voicemail"})
    rr.refresh_from_db()
    assert rr.status == Status.WAITING

    page = staff_client.get(url(rr)).content.decode()
    assert 'action="' + url(rr, "resume") + '"' in page
    assert 'action="' + url(rr, "start") + '"' not in page
    response = staff_client.post(url(rr, "resume"), {"expected_status": "waiting"})

    rr.refresh_from_db()
    assert rr.status == Status.IN_PROGRESS
    assert messages_of(response) == [f"{rr.reference} is back in progress; the due clock runs again."]


def test_start_cannot_make_the_resume_move(staff_client):
    rr = ResetRequestFactory(waiting=True)

    response = staff_client.post(url(rr, "start"), {"expected_status": "waiting"})

    rr.refresh_from_db()
    assert rr.status == Status.WAITING
    assert "cannot go from waiting on patient" in messages_of(response)[0]


def test_a_closed_request_is_reopened_with_a_reason_and_the_patient_emailed(staff_client, staff):
    rr = ResetRequestFactory(closed=True, close_reason="duplicate")

    page = staff_client.get(url(rr)).content.decode()
    assert f'href="{url(rr, "reopen")}?expected_status=closed"' in page
    form = staff_client.get(url(rr, "reopen"), {"expected_status": "closed"}).content.decode()
    assert re.search(r'<input[^>]*name="notify_patient"[^>]*checked', form)
    response = staff_client.post(
        url(rr, "reopen"),
        {"expected_status": "closed", "reason": "closed_by_mistake", "note": "", "notify_patient": "on"},
    )

    assert response["Location"] == url(rr)
    rr.refresh_from_db()
    assert rr.status == Status.IN_PROGRESS
    assert rr.close_reason == ""
    assert rr.assignee == staff
    assert rr.emails.filter(kind=OutboundEmail.Kind.REOPENED).count() == 1


def test_reopen_is_refused_past_reopen_days_with_the_reason(staff_client, staff, settings, time_machine):
    rr = ResetRequestFactory(resolved=True)
    time_machine.move_to(timezone.now() + timedelta(days=settings.REOPEN_DAYS, minutes=1))
    staff_client.force_login(staff)  # the session of a month ago has timed out

    response = staff_client.get(url(rr, "reopen"), {"expected_status": "resolved"})

    assert response["Location"] == url(rr)
    assert "30 days" in messages_of(response)[0]
    rr.refresh_from_db()
    assert rr.status == Status.RESOLVED


def test_the_patients_language_is_changed_on_the_timeline(staff_client):
    rr = ResetRequestFactory(language="en")

    response = staff_client.post(url(rr, "language"), {"expected_status": "new", "language": "es"})

    rr.refresh_from_db()
    assert rr.language == "es"
    assert rr.events.filter(kind=RequestEvent.Kind.LANGUAGE).count() == 1
    assert messages_of(response) == [f"The patient of {rr.reference} now gets their emails in Español."]


def test_a_message_is_chosen_from_the_templates_as_the_patient_will_read_it(staff_client, staff):
    rr = ResetRequestFactory(in_progress=True, language="es")
    template = MessageTemplate.objects.get(title="We tried to call you")

    page = staff_client.get(url(rr, "message")).content.decode()
    assert "The patient reads it in Español" in page
    assert template.title in page
    assert rr.reference in page and "Intentamos llamarle" in page
    response = staff_client.post(url(rr, "message"), {"expected_status": "in_progress", "template": template.pk})

    assert response["Location"] == url(rr)
    sent = PatientMessage.objects.get(reset=rr)
    assert sent.sent_by == staff
    assert sent.body.startswith("Intentamos llamarle")
    assert rr.emails.filter(kind=OutboundEmail.Kind.MESSAGE).count() == 1
    assert sent.body in staff_client.get(url(rr)).content.decode()


def test_a_message_without_a_choice_is_asked_for_again_and_nothing_is_sent(staff_client):
    rr = ResetRequestFactory(in_progress=True)

    response = staff_client.post(url(rr, "message"), {"expected_status": "in_progress"})

    assert response.status_code == 200
    assert "Choose the message to send." in response.content.decode()
    assert not PatientMessage.objects.exists()
    assert not rr.emails.exists()
