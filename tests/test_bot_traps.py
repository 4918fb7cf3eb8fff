"""Submissions that look automated — the honeypot filled in, the form sent
back faster than a person could, no timing value from our page — are held,
never dropped: the sender sees the normal confirmation, the submission is
kept apart from reset requests (no timeline, no open-request slot, no
email), and staff decide. A real patient whose browser lost its cookies
files as usual: the timing value travels in the form."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from requests_app.models import HeldSubmission, OutboundEmail, RequestEvent, ResetRequest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _timing_check_on(settings):
    settings.SUBMIT_MIN_SECONDS = 3


def served_timing_value(client) -> str:
    """The signed timing value of the form as a browser is served it."""
    html = client.get("/reset/").content.decode()
    match = re.search(r'<input type="hidden" name="form_started" value="([^"]+)">', html)
    assert match, "the form carries no timing value"
    return match[1]


def post(client, data, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/reset/", data)


def assert_held_only(why):
    """One held submission, and nothing of a reset request: no request, no
    timeline, no email."""
    assert list(HeldSubmission.objects.values_list("why", flat=True)) == [why]
    assert ResetRequest.objects.count() == 0
    assert RequestEvent.objects.count() == 0
    assert OutboundEmail.objects.count() == 0
    assert mail.outbox == []


def test_it_holds_a_form_with_the_honeypot_filled_but_looks_accepted(
    client, form_data, django_capture_on_commit_callbacks
):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        started = served_timing_value(client)
        traveller.shift(timedelta(seconds=10))
        response = post(
            client, form_data(website="http://spam.example", form_started=started), django_capture_on_commit_callbacks
        )

    assert response.status_code == 303
    held = HeldSubmission.objects.get()
    assert response["Location"] == f"/reset/submitted/{held.reference}/"
    assert client.get(response["Location"]).status_code == 200
    assert_held_only("honeypot")


def test_it_keeps_what_the_held_form_said_for_staff(client, form_data, django_capture_on_commit_callbacks):
    post(client, form_data(first_name="Rosa", phone="555-201-9999"), django_capture_on_commit_callbacks)

    held = HeldSubmission.objects.get()
    assert (held.first_name, held.last_name, held.phone, held.email) == (
        "Rosa",
        "Lopez",
        "+15552019999",
        "maria.lopez@example.com",
    )
    assert held.date_of_birth.isoformat() == "1980-04-23"


def test_it_holds_a_form_sent_back_faster_than_the_minimum(client, form_data, django_capture_on_commit_callbacks):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        started = served_timing_value(client)
        traveller.shift(timedelta(seconds=2))
        response = post(client, form_data(form_started=started), django_capture_on_commit_callbacks)

    assert response.status_code == 303
    assert_held_only("too_fast")


def test_it_files_a_form_sent_back_after_the_minimum(client, form_data, django_capture_on_commit_callbacks):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        started = served_timing_value(client)
        traveller.shift(timedelta(seconds=4))
        response = post(client, form_data(form_started=started), django_capture_on_commit_callbacks)

    assert response.status_code == 303
    assert ResetRequest.objects.count() == 1
    assert HeldSubmission.objects.count() == 0
    assert len(mail.outbox) == 2


def test_it_files_the_form_of_a_browser_that_lost_its_cookies(client, form_data, django_capture_on_commit_callbacks):
    # A restored tab, or a browser that keeps no cookies: the timing value is
    # in the form, so nothing depends on a cookie surviving.
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        started = served_timing_value(client)
        traveller.shift(timedelta(minutes=30))
        client.cookies.clear()
        client.get("/reset/")  # a fresh CSRF cookie, as the restored tab's reload gets
        response = post(client, form_data(form_started=started), django_capture_on_commit_callbacks)

    assert response.status_code == 303
    assert ResetRequest.objects.count() == 1


def test_it_holds_a_post_without_the_timing_value(client, form_data, django_capture_on_commit_callbacks):
    response = post(client, form_data(), django_capture_on_commit_callbacks)  # never loaded the form

    assert response.status_code == 303
    assert_held_only("no_timing")


@pytest.mark.parametrize("forged", ["0", "1700000000.0:forged:signature", "x" * 300])
def test_it_holds_a_post_with_a_forged_timing_value(client, form_data, django_capture_on_commit_callbacks, forged):
    response = post(client, form_data(form_started=forged), django_capture_on_commit_callbacks)

    assert response.status_code == 303
    assert_held_only("no_timing")


def test_it_shows_a_form_open_for_more_than_a_day_again_with_everything_kept(client, form_data):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        started = served_timing_value(client)
        traveller.shift(timedelta(hours=25))
        response = client.post("/reset/", form_data(first_name="Rosa", form_started=started))

    assert response.status_code == 200
    html = response.content.decode()
    assert "open for more than a day" in html
    assert 'value="Rosa"' in html
    assert 'value="maria.lopez@example.com"' in html
    fresh = re.search(r'name="form_started" value="([^"]+)"', html)
    assert fresh and fresh[1] != started
    assert ResetRequest.objects.count() == 0
    assert HeldSubmission.objects.count() == 0


def test_it_lets_a_held_submission_take_no_open_request_slot(client, form_data, django_capture_on_commit_callbacks):
    post(client, form_data(website="http://spam.example"), django_capture_on_commit_callbacks)
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        started = served_timing_value(client)
        traveller.shift(timedelta(seconds=30))
        post(client, form_data(form_started=started), django_capture_on_commit_callbacks)

    reset = ResetRequest.objects.get()
    assert reset.events.filter(kind=RequestEvent.Kind.SUBMITTED).exists()
    assert not reset.events.filter(kind=RequestEvent.Kind.DUPLICATE).exists()
    assert [message.to for message in mail.outbox] == [["maria.lopez@example.com"], ["staff@practice.example"]]


def test_it_skips_the_timing_check_when_the_minimum_is_zero(client, form_data, settings):
    settings.SUBMIT_MIN_SECONDS = 0
    assert client.post("/reset/", form_data()).status_code == 303
    assert ResetRequest.objects.count() == 1


def test_it_renders_the_honeypot_hidden_from_people(client):
    html = client.get("/reset/").content.decode()
    wrapper = re.search(r'<div\s+class="d-none"\s+aria-hidden="true">\s*<div id="div_id_website"', html)
    assert wrapper is not None
    assert re.search(r'<input[^>]*name="website"[^>]*tabindex="-1"', html)
