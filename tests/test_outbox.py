"""The outbox: every email is a row before it is queued, is sent once per
claim, retries temporary SMTP failures with backoff, records permanent ones,
and survives a broker that is down when the patient submits."""

from __future__ import annotations

import io
import smtplib
from datetime import UTC, datetime, timedelta
from email.generator import BytesGenerator
from email.policy import compat32
from typing import Any
from unittest import mock

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone
from kombu.exceptions import OperationalError

from requests_app.models import OutboundEmail, RequestEvent, ResetRequest
from requests_app.outbox.render import build_message
from requests_app.outbox.send import email_send_many
from requests_app.outbox.sweep import outbox_recover, outbox_sweep

from .conftest import valid_form_data
from .factories import OutboundEmailFactory, outbound_email_of_kind

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)


class TryLaterBackend(LocmemBackend):
    """An SMTP server that answers 451: try again later."""

    def send_messages(self, messages: Any) -> int:
        raise smtplib.SMTPResponseException(451, b"4.3.0 try later")


class NoSuchUserBackend(LocmemBackend):
    """An SMTP server that answers 550: this will never work."""

    def send_messages(self, messages: Any) -> int:
        raise smtplib.SMTPResponseException(550, b"5.1.1 no such user")


class RecipientRefusedBackend(LocmemBackend):
    def send_messages(self, messages: Any) -> int:
        raise smtplib.SMTPRecipientsRefused({"patient@example.com": (550, b"5.1.1 mailbox unavailable")})


class DisconnectedBackend(LocmemBackend):
    def send_messages(self, messages: Any) -> int:
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


TRY_LATER = f"{__name__}.TryLaterBackend"
NO_SUCH_USER = f"{__name__}.NoSuchUserBackend"


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def row(email: OutboundEmail) -> OutboundEmail:
    return OutboundEmail.objects.get(pk=email.pk)


# --- Sending once -------------------------------------------------------------------


def test_it_sends_an_outbox_email_and_marks_it_sent():
    email = OutboundEmailFactory()

    result = email_send_many(email_ids=[email.pk])[email.pk]

    assert result.state == "sent"
    stored = row(email)
    assert (stored.state, stored.attempts, stored.sent_at) == ("sent", 1, NOW)
    assert [m.to for m in mail.outbox] == [[email.to]]
    assert email.reset.events.filter(kind=RequestEvent.Kind.EMAIL_SENT).count() == 1


def test_it_sends_an_email_once_when_the_task_runs_twice():
    email = OutboundEmailFactory()

    email_send_many(email_ids=[email.pk])[email.pk]
    second = email_send_many(email_ids=[email.pk])[email.pk]

    assert second.state == "sent"
    assert len(mail.outbox) == 1
    assert row(email).attempts == 1
    assert email.reset.events.filter(kind=RequestEvent.Kind.EMAIL_SENT).count() == 1


def test_it_sends_once_when_the_celery_task_is_delivered_twice():
    from requests_app.tasks import send_emails

    email = OutboundEmailFactory()

    send_emails.delay([email.pk])
    send_emails.delay([email.pk])

    assert len(mail.outbox) == 1
    assert row(email).state == "sent"


def test_it_does_not_send_an_email_another_worker_is_sending(settings):
    email = OutboundEmailFactory(state="sending", claimed_at=NOW - timedelta(seconds=10), attempts=1)

    result = email_send_many(email_ids=[email.pk])[email.pk]

    assert result.state == "sending"
    assert mail.outbox == []
    assert row(email).attempts == 1


def test_it_takes_over_a_claim_a_dead_worker_left_behind(settings):
    stale = NOW - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT_SECONDS + 1)
    email = OutboundEmailFactory(state="sending", claimed_at=stale, attempts=1)

    email_send_many(email_ids=[email.pk])[email.pk]

    assert len(mail.outbox) == 1
    assert (row(email).state, row(email).attempts) == ("sent", 2)


def test_it_never_sends_a_failed_email_again():
    email = OutboundEmailFactory(state="failed", attempts=6, last_error="550 no such user")

    email_send_many(email_ids=[email.pk])[email.pk]

    assert mail.outbox == []
    assert row(email).state == "failed"


def test_it_answers_missing_for_an_email_that_does_not_exist():
    assert email_send_many(email_ids=[987654])[987654].state == "missing"
    assert mail.outbox == []


# --- What goes over the wire ----------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("kind", [kind for kind, _ in OutboundEmail.Kind.choices])
def test_it_writes_each_email_out_byte_for_byte_as_django_would(settings, kind, language):
    # A practice name that is not ASCII and a long address, so that the
    # From and Reply-To headers take the usual way (encoded, folded) too.
    settings.PRACTICE_NAME = "Clínica Familiar de Medicina Integral del Valle Norte y Sur"
    settings.PRACTICE_CONTACT_EMAIL = "recepcion.de.la.clinica.familiar.del.valle@practice.example"
    message = build_message(outbound_email_of_kind(kind, language=language)).message()
    ours = message.as_bytes(linesep="\r\n")
    theirs = io.BytesIO()
    BytesGenerator(theirs, mangle_from_=False, policy=compat32).flatten(message, linesep="\r\n")

    assert ours == theirs.getvalue()


# --- SMTP failures -----------------------------------------------------------------------


def test_it_puts_an_email_back_to_pending_with_a_backoff_on_a_4xx_reply(settings):
    settings.EMAIL_BACKEND = TRY_LATER
    email = OutboundEmailFactory()

    result = email_send_many(email_ids=[email.pk])[email.pk]

    stored = row(email)
    assert (stored.state, stored.attempts) == ("pending", 1)
    assert stored.last_error == "451 4.3.0 try later"
    # About 30 seconds after the first attempt, with jitter.
    assert NOW + timedelta(seconds=15) <= stored.next_attempt_at <= NOW + timedelta(seconds=30)
    assert result.retry_in == pytest.approx((stored.next_attempt_at - NOW).total_seconds(), abs=0.001)
    assert not email.reset.events.filter(kind=RequestEvent.Kind.EMAIL_FAILED).exists()


def test_it_waits_longer_after_each_temporary_failure(settings):
    settings.EMAIL_BACKEND = TRY_LATER
    email = OutboundEmailFactory(attempts=3)

    email_send_many(email_ids=[email.pk])[email.pk]

    stored = row(email)
    assert stored.attempts == 4
    # The fourth attempt waits about 4 minutes (30 s doubled three times).
    assert NOW + timedelta(seconds=120) <= stored.next_attempt_at <= NOW + timedelta(seconds=240)


def test_it_retries_when_the_smtp_server_drops_the_connection(settings):
    settings.EMAIL_BACKEND = f"{__name__}.DisconnectedBackend"
    email = OutboundEmailFactory()

    email_send_many(email_ids=[email.pk])[email.pk]

    assert row(email).state == "pending"


def test_it_gives_up_on_a_temporary_failure_after_the_last_attempt(settings):
    settings.EMAIL_BACKEND = TRY_LATER
    settings.EMAIL_MAX_ATTEMPTS = 3
    email = OutboundEmailFactory(attempts=2)

    result = email_send_many(email_ids=[email.pk])[email.pk]

    stored = row(email)
    assert result.state == "failed"
    assert (stored.state, stored.attempts, stored.last_error) == ("failed", 3, "451 4.3.0 try later")
    assert email.reset.events.filter(kind=RequestEvent.Kind.EMAIL_FAILED).count() == 1


def test_it_marks_an_email_failed_on_a_5xx_reply(settings):
    settings.EMAIL_BACKEND = NO_SUCH_USER
    email = OutboundEmailFactory()

    result = email_send_many(email_ids=[email.pk])[email.pk]

    stored = row(email)
    assert result.state == "failed"
    assert (stored.state, stored.attempts) == ("failed", 1)
    assert stored.last_error == "550 5.1.1 no such user"
    failed = email.reset.events.get(kind=RequestEvent.Kind.EMAIL_FAILED)
    assert "550" in failed.message
    assert failed.created_at == NOW


def test_it_marks_an_email_failed_when_the_recipient_is_refused_for_good(settings):
    settings.EMAIL_BACKEND = f"{__name__}.RecipientRefusedBackend"
    email = OutboundEmailFactory()

    email_send_many(email_ids=[email.pk])[email.pk]

    stored = row(email)
    assert stored.state == "failed"
    assert stored.last_error.startswith("550")


def test_it_does_not_send_a_failed_email_when_the_sweeper_runs(settings):
    settings.EMAIL_BACKEND = NO_SUCH_USER
    email = OutboundEmailFactory(created_at=NOW - timedelta(hours=1))
    email_send_many(email_ids=[email.pk])[email.pk]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    assert outbox_sweep() == 0
    assert mail.outbox == []


def test_it_has_the_celery_task_queue_a_4xx_again_after_its_backoff(settings):
    from requests_app.tasks import send_emails

    settings.EMAIL_BACKEND = TRY_LATER
    email = OutboundEmailFactory()

    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        assert send_emails.apply(args=[[email.pk]]).get() == {str(email.pk): "pending"}

    stored = row(email)
    assert stored.state == "pending"
    [call] = apply_async.call_args_list
    assert call.kwargs["args"] == [[email.pk]]
    assert call.kwargs["countdown"] == pytest.approx((stored.next_attempt_at - NOW).total_seconds(), abs=0.001)


def test_it_does_not_send_an_email_before_its_retry_time_when_its_task_comes_early(settings):
    email = OutboundEmailFactory(attempts=1, next_attempt_at=NOW + timedelta(seconds=30))

    result = email_send_many(email_ids=[email.pk])[email.pk]

    assert result.state == "pending"
    assert (row(email).state, row(email).attempts) == ("pending", 1)
    assert mail.outbox == []


def test_it_has_the_celery_task_give_up_on_a_5xx(settings):
    from requests_app.tasks import send_emails

    settings.EMAIL_BACKEND = NO_SUCH_USER
    email = OutboundEmailFactory()

    assert send_emails.delay([email.pk]).get() == {str(email.pk): "failed"}
    assert row(email).state == "failed"


# --- The sweeper ---------------------------------------------------------------------------


def test_it_sweeps_a_pending_email_older_than_the_grace_period(time_machine):
    email = OutboundEmailFactory()
    time_machine.shift(timedelta(seconds=61))

    assert outbox_sweep(grace_seconds=60) == 1

    assert row(email).state == "sent"
    assert [m.to for m in mail.outbox] == [[email.to]]


def test_it_leaves_a_fresh_pending_email_to_its_own_publish(time_machine):
    email = OutboundEmailFactory()
    time_machine.shift(timedelta(seconds=59))

    assert outbox_sweep(grace_seconds=60) == 0

    assert row(email).state == "pending"
    assert mail.outbox == []


def test_it_waits_out_the_backoff_before_sweeping_a_retry(settings, time_machine):
    settings.EMAIL_BACKEND = TRY_LATER
    email = OutboundEmailFactory()
    email_send_many(email_ids=[email.pk])[email.pk]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    retry_at = row(email).next_attempt_at

    time_machine.move_to(retry_at, tick=False)
    assert outbox_sweep(grace_seconds=60) == 0
    time_machine.move_to(retry_at + timedelta(seconds=61), tick=False)
    assert outbox_sweep(grace_seconds=60) == 1

    assert (row(email).state, row(email).attempts) == ("sent", 2)
    assert len(mail.outbox) == 1


def test_it_sweeps_a_stale_sending_claim(settings):
    stale = NOW - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT_SECONDS + 1)
    email = OutboundEmailFactory(state="sending", claimed_at=stale, attempts=1)

    assert outbox_sweep() == 1

    assert row(email).state == "sent"
    assert len(mail.outbox) == 1


def test_it_leaves_a_recent_sending_claim_alone(settings):
    recent = NOW - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT_SECONDS - 1)
    email = OutboundEmailFactory(state="sending", claimed_at=recent, attempts=1)

    assert outbox_sweep() == 0

    assert row(email).state == "sending"
    assert mail.outbox == []


def test_it_queues_what_a_dead_worker_left_behind_when_a_worker_starts(settings, time_machine):
    # Pending and due but younger than the sweeper's grace: its message may
    # be among those a dead worker had taken and will not acknowledge.
    taken = OutboundEmailFactory(next_attempt_at=NOW - timedelta(seconds=5))
    # Claims renewed by their workers just before this one started: one
    # worker has died since, the other lives on and goes on renewing.
    dead = OutboundEmailFactory(state="sending", claimed_at=NOW - timedelta(seconds=2), attempts=1)
    alive = OutboundEmailFactory(state="sending", claimed_at=NOW - timedelta(seconds=2), attempts=1)

    def sleep(seconds: float) -> None:
        time_machine.shift(timedelta(seconds=seconds))
        OutboundEmail.objects.filter(pk=alive.pk).update(claimed_at=timezone.now())  # its heartbeat

    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        assert outbox_recover(sleep=sleep) == 2

    # At once the pending row; the dead worker's claim once it ran out.
    assert [call.kwargs["args"] for call in apply_async.call_args_list] == [[[taken.pk]], [[dead.pk]]]


def test_it_does_not_sweep_a_sent_email(time_machine):
    email = OutboundEmailFactory()
    email_send_many(email_ids=[email.pk])[email.pk]
    time_machine.shift(timedelta(hours=1))

    assert outbox_sweep() == 0
    assert len(mail.outbox) == 1


def test_it_runs_the_sweep_from_the_scheduled_task(time_machine):
    from requests_app.tasks import sweep_outbox

    email = OutboundEmailFactory()
    time_machine.shift(timedelta(minutes=5))

    sweep_outbox.delay()

    assert row(email).state == "sent"


# --- A broker that is down ------------------------------------------------------------------


@pytest.fixture
def broker_down() -> Any:
    with mock.patch(
        "requests_app.tasks.send_emails.apply_async",
        side_effect=OperationalError("Error 111 connecting to localhost:6379. Connection refused."),
    ) as apply_async:
        yield apply_async


def test_it_confirms_a_request_while_the_broker_is_down(submit, broker_down):
    response = submit(valid_form_data())

    request = ResetRequest.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"/reset/submitted/{request.reference}/"
    assert sorted(request.emails.values_list("kind", "state")) == [
        ("acknowledgment", "pending"),
        ("staff_new_request", "pending"),
    ]
    # One message for both emails: the broker was asked once.
    assert broker_down.call_count == 1
    assert mail.outbox == []


def test_it_sends_what_waited_once_the_broker_is_back(submit, time_machine):
    with mock.patch("requests_app.tasks.send_emails.apply_async", side_effect=OperationalError("connection refused")):
        submit(valid_form_data())
    time_machine.shift(timedelta(minutes=2))

    assert outbox_sweep() == 2

    assert OutboundEmail.objects.filter(state="sent").count() == 2
    assert sorted(m.to[0] for m in mail.outbox) == ["maria.lopez@example.com", "staff@practice.example"]


def test_it_leaves_a_swept_email_pending_while_the_broker_is_still_down(broker_down, time_machine):
    email = OutboundEmailFactory()
    time_machine.shift(timedelta(minutes=5))

    assert outbox_sweep() == 0

    assert row(email).state == "pending"
