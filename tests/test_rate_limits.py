"""The public form is rate-limited per client address and per target email,
in the shared cache. Past the per-address limit: a polite 429, nothing
stored. Past the per-email limit a submission is kept without another
email (on the open request's timeline, or held) and answered like any
other, so the limit stops email bombing without telling anyone that the
address was used."""

import contextlib
from collections import Counter

import pytest
from django.core import mail
from django.core.cache import caches
from django.utils import timezone

from requests_app.models import HeldSubmission, OutboundEmail, RequestEvent, ResetRequest

pytest_plugins = ["tests.support.redis_servers"]
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


def test_it_does_not_count_the_email_of_a_post_past_the_address_limit(
    client, form_data, settings, django_capture_on_commit_callbacks
):
    settings.SUBMIT_RATE_PER_ADDRESS = "1/h"
    settings.SUBMIT_RATE_PER_EMAIL = "1/h"
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post("/reset/", form_data(email="a@example.com"), HTTP_X_REAL_IP="203.0.113.7")
        refused = client.post("/reset/", form_data(email="b@example.com"), HTTP_X_REAL_IP="203.0.113.7")
        # b@ was not counted by the refused POST: from another client, filed.
        other_client = client.post("/reset/", form_data(email="b@example.com"), HTTP_X_REAL_IP="203.0.113.8")

    assert (first.status_code, refused.status_code, other_client.status_code) == (303, 429, 303)
    assert ResetRequest.objects.filter(email="b@example.com", is_open=True).count() == 1
    assert not HeldSubmission.objects.exists()


@pytest.mark.parametrize("step", ["invalid", "date step", "too early", "held"])
def test_every_kind_of_post_counts_once_against_the_address(client, form_data, settings, step):
    settings.SUBMIT_RATE_PER_ADDRESS = "2/h"
    posts = {
        "invalid": {"first_name": ""},
        "date step": {"appointment_date": form_data()["appointment_date"]},
        "too early": form_data(appointment_date=timezone.localdate().isoformat()),
        "held": form_data(website="http://spam.example"),
    }
    answers = [client.post("/reset/", posts[step]).status_code for _ in range(3)]

    assert answers[:2] in ([200, 200], [303, 303])
    assert answers[2] == 429


def test_a_malformed_rate_is_an_error_not_an_outage(client, form_data, settings):
    settings.SUBMIT_RATE_PER_ADDRESS = "twenty an hour"

    with pytest.raises(ValueError, match="not a rate"):
        client.post("/reset/", form_data())


# --- On Redis (production): both counters in one round trip ----------------------


@pytest.fixture
def redis_counters(throwaway_redis, settings):
    """The default cache on a Redis of this test's own, as settings put a
    redis:// CACHE_URL on django-redis; the server, to read what it was sent."""
    suite_caches = settings.CACHES
    settings.CACHES = {
        **suite_caches,
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": throwaway_redis.url(1),
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        },
    }
    yield throwaway_redis
    with contextlib.suppress(Exception):  # a test may have stopped the server
        caches["default"].clear()
    settings.CACHES = suite_caches


def redis_calls(server) -> Counter:
    """Commands the server ran, by name (this INFO and its connection's HELLO apart)."""
    stats = server.client().info("commandstats")
    ours = {"cmdstat_info", "cmdstat_hello"}
    return Counter({name.removeprefix("cmdstat_"): s["calls"] for name, s in stats.items() if name not in ours})


@pytest.mark.services
def test_it_counts_a_filing_against_the_address_and_the_email_in_one_round_trip(
    redis_counters, submit, form_data, settings
):
    submit(form_data(email="first@example.com"))  # the server learns the script
    before = redis_calls(redis_counters)

    response = submit(form_data(email="second@example.com"))

    assert response.status_code == 303
    # One command from the app: the script, whose INCRs (address, email) and
    # EXPIRE (the new email counter's) Redis counts as well.
    assert redis_calls(redis_counters) - before == Counter({"evalsha": 1, "incr": 2, "expire": 1})
    # Hashed: no address and no email in any key.
    keys = b" ".join(redis_counters.client(1).keys("*"))
    assert b"second" not in keys and b"127.0.0.1" not in keys


@pytest.mark.services
def test_on_redis_the_limits_hold_as_on_any_cache(redis_counters, submit, form_data, settings):
    settings.SUBMIT_RATE_PER_EMAIL = "2/h"
    settings.SUBMIT_RATE_PER_ADDRESS = "4/h"
    answers = [submit(form_data()).status_code for _ in range(3)]
    reset = ResetRequest.objects.get()
    other = submit(form_data(email="other@example.com")).status_code
    past_address = submit(form_data(email="third@example.com")).status_code

    assert (answers, other, past_address) == ([303, 303, 303], 303, 429)
    # The third was past the email limit: kept on the timeline, no email.
    assert reset.events.filter(kind=RequestEvent.Kind.DUPLICATE).count() == 2
    assert "no email was sent" in reset.events.filter(kind=RequestEvent.Kind.DUPLICATE).last().message
    assert not ResetRequest.objects.filter(email="third@example.com").exists()


@pytest.mark.services
def test_with_redis_down_the_form_still_files_the_request(throwaway_redis, redis_counters, submit, form_data):
    throwaway_redis.stop()

    response = submit(form_data())

    assert response.status_code == 303
    assert ResetRequest.objects.filter(email=form_data()["email"]).exists()
