"""The public form is rate-limited per client address and per target email,
in the shared cache. Past the per-address limit: a polite 429, nothing
stored. Past the per-email limit a submission is kept without another
email (on the open request's timeline, or held) and answered like any
other, so the limit stops email bombing without telling anyone that the
address was used."""

import pytest
from django.core import mail

from requests_app.models import HeldSubmission, OutboundEmail, RequestEvent, ResetRequest

pytestmark = pytest.mark.django_db


def post(client, form_data, django_capture_on_commit_callbacks, **overrides):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/reset/", form_data(**overrides))


def close_all_open():
    # Each accepted submission is then a new request rather than a duplicate.
    ResetRequest.objects.filter(is_open=True).update(status="closed", is_open=False, close_reason="withdrawn")


def test_it_keeps_a_submission_past_the_email_limit_on_the_open_request_without_another_email(
    client, form_data, settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_RATE_PER_EMAIL = "5/h"
    answers = [post(client, form_data, django_capture_on_commit_callbacks) for _ in range(5)]
    reset = ResetRequest.objects.get()
    emails_before, sent_before = OutboundEmail.objects.count(), len(mail.outbox)

    sixth = post(client, form_data, django_capture_on_commit_callbacks, email="MARIA.LOPEZ@example.com")

    # Answered exactly like the others: the limit tells nobody the address was used.
    assert sixth.status_code == 303
    assert sixth["Location"] == answers[0]["Location"] == f"/reset/submitted/{reset.reference}/"
    assert ResetRequest.objects.count() == 1
    assert reset.events.filter(kind=RequestEvent.Kind.DUPLICATE).count() == 5
    assert "no email was sent" in reset.events.filter(kind=RequestEvent.Kind.DUPLICATE).last().message
    assert OutboundEmail.objects.count() == emails_before
    assert len(mail.outbox) == sent_before


def test_it_holds_a_submission_past_the_email_limit_when_no_request_is_open(
    client, form_data, settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_RATE_PER_EMAIL = "2/h"
    for _ in range(2):
        post(client, form_data, django_capture_on_commit_callbacks)
        close_all_open()
    emails_before, sent_before = OutboundEmail.objects.count(), len(mail.outbox)

    third = post(client, form_data, django_capture_on_commit_callbacks)

    assert third.status_code == 303
    held = HeldSubmission.objects.get()
    assert held.why == "email_limit"
    assert third["Location"] == f"/reset/submitted/{held.reference}/"
    assert ResetRequest.objects.filter(is_open=True).count() == 0
    assert (OutboundEmail.objects.count(), len(mail.outbox)) == (emails_before, sent_before)


def test_it_counts_each_email_separately(client, form_data, settings, django_capture_on_commit_callbacks):
    settings.SUBMIT_RATE_PER_EMAIL = "2/h"
    for _ in range(2):
        post(client, form_data, django_capture_on_commit_callbacks, email="first@example.com")
        close_all_open()
    post(client, form_data, django_capture_on_commit_callbacks, email="first@example.com")
    assert HeldSubmission.objects.filter(email="first@example.com").count() == 1

    post(client, form_data, django_capture_on_commit_callbacks, email="second@example.com")
    assert ResetRequest.objects.filter(email="second@example.com", is_open=True).exists()


def test_it_does_not_let_held_bot_posts_use_up_a_patients_email_quota(
    client, form_data, settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_RATE_PER_EMAIL = "2/h"
    for _ in range(5):
        post(client, form_data, django_capture_on_commit_callbacks, website="http://spam.example")
    assert HeldSubmission.objects.filter(why="honeypot").count() == 5

    post(client, form_data, django_capture_on_commit_callbacks)

    assert ResetRequest.objects.filter(is_open=True).count() == 1
    assert len(mail.outbox) == 2  # the acknowledgment and the staff notice


def test_it_limits_one_address_across_emails(client, form_data, settings, django_capture_on_commit_callbacks):
    settings.SUBMIT_RATE_PER_ADDRESS = "3/h"
    for n in range(3):
        response = post(client, form_data, django_capture_on_commit_callbacks, email=f"p{n}@example.com")
        assert response.status_code == 303
    response = post(client, form_data, django_capture_on_commit_callbacks, email="p9@example.com")
    assert response.status_code == 429
    assert not ResetRequest.objects.filter(email="p9@example.com").exists()


def test_it_counts_invalid_posts_against_the_address(client, settings):
    settings.SUBMIT_RATE_PER_ADDRESS = "3/h"
    for _ in range(3):
        assert client.post("/reset/", {"first_name": ""}).status_code == 200
    assert client.post("/reset/", {"first_name": ""}).status_code == 429


def test_it_reads_the_client_address_from_the_configured_proxy_header_only(
    client, form_data, settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_RATE_PER_ADDRESS = "1/h"
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    first = client.post("/reset/", form_data(email="a@example.com"), HTTP_X_REAL_IP="203.0.113.7")
    other_client = client.post("/reset/", form_data(email="b@example.com"), HTTP_X_REAL_IP="203.0.113.8")
    same_client = client.post("/reset/", form_data(email="c@example.com"), HTTP_X_REAL_IP="203.0.113.7")
    assert (first.status_code, other_client.status_code, same_client.status_code) == (303, 303, 429)


def test_it_ignores_forwarded_headers_when_no_proxy_header_is_configured(client, form_data, settings):
    settings.SUBMIT_RATE_PER_ADDRESS = "1/h"
    settings.CLIENT_IP_HEADER = ""
    assert (
        client.post("/reset/", form_data(email="a@example.com"), HTTP_X_FORWARDED_FOR="203.0.113.1").status_code == 303
    )
    # A bot rotating the header is still one address.
    assert (
        client.post("/reset/", form_data(email="b@example.com"), HTTP_X_FORWARDED_FOR="203.0.113.2").status_code == 429
    )


def test_it_counts_an_addresss_plus_tag_and_gmail_dot_spellings_as_one_for_the_limit(
    client, form_data, settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_RATE_PER_EMAIL = "2/h"
    for email in ("maria.lopez@gmail.com", "maria.lopez+portal@gmail.com"):
        post(client, form_data, django_capture_on_commit_callbacks, email=email)
        close_all_open()
    sent_before = len(mail.outbox)

    post(client, form_data, django_capture_on_commit_callbacks, email="m.a.r.i.a.lopez+again@googlemail.com")

    assert HeldSubmission.objects.get().why == "email_limit"
    assert len(mail.outbox) == sent_before
