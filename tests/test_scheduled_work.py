"""What beat runs on its own: requests left waiting close themselves, and
staff get one overdue digest a day."""

import email
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from portal_reset.celery import app as celery_app
from requests_app import services
from requests_app.models import OutboundEmail, RequestEvent, ResetRequest
from requests_app.tasks import close_stale_waiting, queue_overdue_digest

from .factories import ResetRequestFactory

pytestmark = pytest.mark.django_db


def wait_on_patient(staff_user) -> ResetRequest:
    request = ResetRequestFactory()
    services.reset_start(reset_id=request.pk, actor=staff_user)
    return services.reset_wait(reset_id=request.pk, actor=staff_user, note="Left a voicemail")


def test_it_closes_a_request_left_waiting_past_the_limit_and_emails_the_patient(
    staff_user, settings, django_capture_on_commit_callbacks
):
    settings.WAITING_AUTO_CLOSE_DAYS = 14
    request = wait_on_patient(staff_user)
    with (
        time_machine.travel(timezone.now() + timedelta(days=14, minutes=1)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert close_stale_waiting.delay().get() == 1
    request.refresh_from_db()
    assert (request.status, request.close_reason, request.is_open) == ("closed", "unverified", False)
    event = request.events.filter(kind=RequestEvent.Kind.STATUS, to_status="closed").get()
    assert event.actor is None and "14 days" in event.message
    assert [m.to for m in mail.outbox] == [[request.email]]


def test_it_leaves_a_request_that_has_not_waited_long_enough(staff_user, settings):
    settings.WAITING_AUTO_CLOSE_DAYS = 14
    request = wait_on_patient(staff_user)
    with time_machine.travel(timezone.now() + timedelta(days=13, hours=23)):
        assert services.resets_close_stale_waiting() == 0
    request.refresh_from_db()
    assert request.status == "waiting"


def test_it_never_auto_closes_a_request_staff_are_working_on(staff_user, settings):
    settings.WAITING_AUTO_CLOSE_DAYS = 14
    request = wait_on_patient(staff_user)
    services.reset_resume(reset_id=request.pk, actor=staff_user)  # the patient called back
    with time_machine.travel(timezone.now() + timedelta(days=30)):
        assert services.resets_close_stale_waiting() == 0
    request.refresh_from_db()
    assert request.status == "in_progress"


def overdue_request() -> ResetRequest:
    submitted = timezone.now() - timedelta(days=2)
    return ResetRequestFactory(submitted_at=submitted, due_at=submitted + timedelta(hours=24))


def test_it_emails_staff_one_digest_listing_the_overdue_requests(settings, django_capture_on_commit_callbacks):
    late = [overdue_request(), overdue_request()]
    on_time = ResetRequestFactory()
    with django_capture_on_commit_callbacks(execute=True):
        assert queue_overdue_digest.delay().get() is True
    (digest,) = mail.outbox
    assert digest.to == [settings.STAFF_NOTIFY_EMAIL]
    body = digest.body + digest.alternatives[0][0]
    assert all(r.reference in body for r in late)
    assert on_time.reference not in body
    # Minimum necessary: references and links, no patient details.
    assert not any(r.last_name in body or r.email in body for r in late)
    assert email.message_from_bytes(digest.message().as_bytes())["Subject"]


def test_it_sends_the_digest_at_most_once_a_practice_day(settings, django_capture_on_commit_callbacks):
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    overdue_request()
    zone = ZoneInfo("America/New_York")
    with time_machine.travel(datetime(2026, 11, 24, 7, 0, tzinfo=zone), tick=False) as traveller:
        overdue_request()
        with django_capture_on_commit_callbacks(execute=True):
            assert services.digest_queue_overdue() is not None
            assert services.digest_queue_overdue() is None  # beat ran twice
        traveller.move_to(datetime(2026, 11, 24, 23, 30, tzinfo=zone))  # after midnight UTC, same day here
        assert services.digest_queue_overdue() is None
        traveller.move_to(datetime(2026, 11, 25, 7, 0, tzinfo=zone))
        assert services.digest_queue_overdue() is not None
    assert OutboundEmail.objects.filter(kind="staff_overdue_digest").count() == 2


def test_it_sends_no_digest_when_nothing_is_overdue():
    ResetRequestFactory()
    assert services.digest_queue_overdue() is None
    assert not OutboundEmail.objects.filter(kind="staff_overdue_digest").exists()


def test_it_schedules_the_sweeper_the_digest_the_auto_close_and_the_purge():
    schedule = {entry["task"]: entry["schedule"] for entry in celery_app.conf.beat_schedule.values()}
    assert schedule["requests_app.tasks.sweep_outbox"] == 60.0
    assert set(schedule) >= {
        "requests_app.tasks.queue_overdue_digest",
        "requests_app.tasks.close_stale_waiting",
        "requests_app.tasks.purge_expired",
    }
    assert celery_app.conf.timezone == "America/New_York"  # the digest hour is the practice's
