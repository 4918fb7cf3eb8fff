"""The public form is rate-limited per target email and per client address,
in the shared cache. Over the limit: a polite 429, nothing stored or sent."""

import pytest
from django.core import mail

from requests_app.models import OutboundEmail, ResetRequest

pytestmark = pytest.mark.django_db


def post(client, form_data, django_capture_on_commit_callbacks, **overrides):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/reset/", form_data(**overrides))


def close_all_open():
    # Each accepted submission is then a new request rather than a duplicate.
    ResetRequest.objects.filter(is_open=True).update(status="closed", is_open=False, close_reason="withdrawn")


def test_it_answers_429_to_the_sixth_submission_for_one_email_within_the_hour(
    client, form_data, settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_RATE_PER_EMAIL = "5/h"
    for _ in range(5):
        assert post(client, form_data, django_capture_on_commit_callbacks).status_code == 303
        close_all_open()
    requests_before, emails_before, sent_before = (
        ResetRequest.objects.count(),
        OutboundEmail.objects.count(),
        len(mail.outbox),
    )

    response = post(client, form_data, django_capture_on_commit_callbacks, email="MARIA.LOPEZ@example.com")

    assert response.status_code == 429
    assert b"Nothing more was saved" in response.content
    assert ResetRequest.objects.count() == requests_before
    assert OutboundEmail.objects.count() == emails_before
    assert len(mail.outbox) == sent_before


def test_it_counts_each_email_separately(client, form_data, settings, django_capture_on_commit_callbacks):
    settings.SUBMIT_RATE_PER_EMAIL = "2/h"
    for _ in range(2):
        post(client, form_data, django_capture_on_commit_callbacks, email="first@example.com")
        close_all_open()
    assert post(client, form_data, django_capture_on_commit_callbacks, email="first@example.com").status_code == 429
    assert post(client, form_data, django_capture_on_commit_callbacks, email="second@example.com").status_code == 303


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
