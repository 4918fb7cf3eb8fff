"""Bots that fill the honeypot or send the form back faster than a person
could see what looks like success, and nothing is stored or sent."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from requests_app.models import OutboundEmail, ResetRequest

pytestmark = pytest.mark.django_db


def assert_nothing_stored_or_sent():
    assert ResetRequest.objects.count() == 0
    assert OutboundEmail.objects.count() == 0
    assert mail.outbox == []


def test_it_drops_a_form_with_the_honeypot_filled_but_looks_accepted(
    client, form_data, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/reset/", form_data(website="http://spam.example"))
    assert response.status_code == 303
    assert response["Location"].startswith("/reset/submitted/")
    assert client.get(response["Location"]).status_code == 200
    assert_nothing_stored_or_sent()


def test_it_drops_a_form_sent_back_faster_than_the_minimum(
    client, form_data, settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_MIN_SECONDS = 3
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        client.get("/reset/")
        traveller.shift(timedelta(seconds=2))
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/reset/", form_data())
    assert response.status_code == 303
    assert_nothing_stored_or_sent()


def test_it_accepts_a_form_sent_back_after_the_minimum(client, form_data, settings, django_capture_on_commit_callbacks):
    settings.SUBMIT_MIN_SECONDS = 3
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        client.get("/reset/")
        traveller.shift(timedelta(seconds=4))
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/reset/", form_data())
    assert response.status_code == 303
    assert ResetRequest.objects.count() == 1


def test_it_treats_a_post_without_the_form_timestamp_as_a_bot(client, form_data, settings):
    settings.SUBMIT_MIN_SECONDS = 3
    response = client.post("/reset/", form_data())  # never loaded the form
    assert response.status_code == 303
    assert ResetRequest.objects.count() == 0


def test_it_treats_a_forged_timestamp_as_a_bot(client, form_data, settings):
    settings.SUBMIT_MIN_SECONDS = 3
    client.cookies["reset_form_started"] = "0:forged:signature"
    response = client.post("/reset/", form_data())
    assert response.status_code == 303
    assert ResetRequest.objects.count() == 0


def test_it_skips_the_timing_check_when_the_minimum_is_zero(client, form_data, settings):
    settings.SUBMIT_MIN_SECONDS = 0
    assert client.post("/reset/", form_data()).status_code == 303
    assert ResetRequest.objects.count() == 1


def test_it_renders_the_honeypot_hidden_from_people(client):
    html = client.get("/reset/").content.decode()
    wrapper = re.search(r'<div\s+class="d-none"\s+aria-hidden="true">\s*<div id="div_id_website"', html)
    assert wrapper is not None
    assert re.search(r'<input[^>]*name="website"[^>]*tabindex="-1"', html)
