"""Emails travel in batches: one Celery message carries several outbox ids
(a patient's emails in a queue of their own) and one SMTP connection carries
their messages, each row still claimed, sent and marked sent on its own
(bench finding: a connection per email cost more than the email)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import OperationalError
from django.utils import timezone

from requests_app.models import OutboundEmail
from requests_app.outbox.lease import heartbeat_enable
from requests_app.outbox.send import email_send_many
from requests_app.outbox.sweep import outbox_sweep
from requests_app.services import digest_queue_overdue
from requests_app.tasks import send_emails

from .conftest import valid_form_data
from .factories import OutboundEmailFactory, ResetRequestFactory

pytest_plugins = ["tests.support.smtp"]
pytestmark = pytest.mark.django_db


def states(request: Any) -> dict[str, str]:
    return dict(request.emails.values_list("kind", "state"))


def test_it_sends_a_batch_over_one_smtp_connection(real_smtp):
    emails = [OutboundEmailFactory(to=f"p{n}@example.com") for n in range(3)]

    outcome = send_emails.apply(args=[[email.pk for email in emails]]).get()

    assert set(outcome.values()) == {"sent"}
    assert len(real_smtp.messages) == 3
    assert len({message.session for message in real_smtp.messages}) == 1


def test_it_hands_a_submissions_two_emails_to_the_patients_queue_in_one_message_the_acknowledgment_first(submit):
    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        submit(valid_form_data())

    ack = OutboundEmail.objects.get(kind="acknowledgment")
    notice = OutboundEmail.objects.get(kind="staff_new_request")
    # One publish: the acknowledgment first, to the queue workers take from
    # first; the staff notice rides after it over the same connection.
    assert [(call.kwargs["args"], call.kwargs["queue"]) for call in apply_async.call_args_list] == [
        ([[ack.pk, notice.pk]], "patient_email"),
    ]


def test_it_hands_staff_emails_queued_alone_to_the_default_queue(django_capture_on_commit_callbacks):
    ResetRequestFactory(due_at=timezone.now() - timedelta(hours=1))
    with (
        mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        digest = digest_queue_overdue()

    assert digest is not None
    assert [(call.kwargs["args"], call.kwargs["queue"]) for call in apply_async.call_args_list] == [
        ([[digest.pk]], None),
    ]


def test_the_sweeper_still_sends_a_backlogs_patient_emails_before_its_staff_emails(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    old = timezone.now() - timedelta(minutes=5)
    notice = OutboundEmailFactory(kind="staff_new_request", created_at=old, next_attempt_at=old)
    ack = OutboundEmailFactory(kind="acknowledgment", created_at=old, next_attempt_at=old)

    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        outbox_sweep()

    assert [(call.kwargs["args"], call.kwargs["queue"]) for call in apply_async.call_args_list] == [
        ([[ack.pk]], "patient_email"),
        ([[notice.pk]], None),
    ]


def test_it_sends_the_rest_of_a_batch_when_one_recipient_is_refused_for_good(real_smtp):
    refused = OutboundEmailFactory(to="gone@example.com")
    fine = OutboundEmailFactory(to="here@example.com")
    real_smtp.script("gone@example.com", ["550 5.1.1 no such mailbox"])

    outcome = send_emails.delay([refused.pk, fine.pk]).get()

    assert outcome == {str(refused.pk): "failed", str(fine.pk): "sent"}
    assert len(real_smtp.to("here@example.com")) == 1
    assert real_smtp.to("gone@example.com") == []


def test_it_retries_only_the_emails_of_a_batch_that_failed_for_a_while(real_smtp):
    later = OutboundEmailFactory(to="busy@example.com")
    fine = OutboundEmailFactory(to="here@example.com")
    real_smtp.script("busy@example.com", ["451 4.3.0 mailbox busy, try later"])

    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        outcome = send_emails.apply(args=[[later.pk, fine.pk]]).get()

    assert outcome == {str(later.pk): "pending", str(fine.pk): "sent"}
    later.refresh_from_db()
    [retry] = apply_async.call_args_list
    assert retry.kwargs["args"] == [[later.pk]]
    assert retry.kwargs["countdown"] == pytest.approx((later.next_attempt_at - timezone.now()).total_seconds(), abs=1)
    assert len(real_smtp.to("here@example.com")) == 1


def test_it_retries_each_email_of_a_batch_after_its_own_backoff(settings, time_machine):
    settings.EMAIL_BACKEND = "tests.test_outbox.TryLaterBackend"
    time_machine.move_to(timezone.now(), tick=False)
    first_try = OutboundEmailFactory(attempts=0)
    fifth_try = OutboundEmailFactory(attempts=4)

    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        send_emails.apply(args=[[first_try.pk, fifth_try.pk]]).get()

    countdowns = {call.kwargs["args"][0][0]: call.kwargs["countdown"] for call in apply_async.call_args_list}
    # About 30 seconds for the first, about 8 minutes for the fifth: each
    # row waits out its own backoff, none is retried at the other's pace.
    assert 15 <= countdowns[first_try.pk] <= 30
    assert 240 <= countdowns[fifth_try.pk] <= 480


def test_it_sends_nothing_twice_when_a_batch_is_delivered_twice(real_smtp):
    emails = [OutboundEmailFactory(to=f"p{n}@example.com") for n in range(3)]
    ids = [email.pk for email in emails]

    send_emails.delay(ids)
    second = send_emails.delay(ids).get()

    assert second == {str(pk): "sent" for pk in ids}
    assert len(real_smtp.messages) == 3


def test_it_queues_a_backlog_in_batches_oldest_first(settings, time_machine):
    settings.EMAIL_BATCH_SIZE = 10
    time_machine.move_to(timezone.now(), tick=False)
    emails = []
    for _ in range(25):
        emails.append(OutboundEmailFactory())
        time_machine.shift(timedelta(seconds=1))
    time_machine.shift(timedelta(minutes=5))

    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        assert outbox_sweep() == 25

    batches = [call.kwargs["args"][0] for call in apply_async.call_args_list]
    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert [pk for batch in batches for pk in batch] == [email.pk for email in emails]


class SlowServerBackend(LocmemBackend):
    """An SMTP server that takes 20 seconds per message (on the test's clock)."""

    clock: Any = None
    seconds = 20

    def send_messages(self, messages: Any) -> int:
        SlowServerBackend.clock.shift(timedelta(seconds=SlowServerBackend.seconds))
        return super().send_messages(messages)


def test_it_puts_the_rest_of_a_batch_back_in_the_queue_when_the_server_is_slow(settings, time_machine):
    settings.EMAIL_BACKEND = f"{__name__}.SlowServerBackend"
    settings.EMAIL_BATCH_SECONDS = 30
    time_machine.move_to(timezone.now(), tick=False)
    SlowServerBackend.clock, SlowServerBackend.seconds = time_machine, 20
    emails = [OutboundEmailFactory(to=f"p{n}@example.com") for n in range(5)]
    ids = [email.pk for email in emails]

    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        outcome = send_emails.apply(args=[ids]).get()

    # Two messages fit in 30 seconds (0 → 20 → 40): the other three go back
    # as a message of their own, unclaimed, no attempt counted.
    assert outcome == {str(ids[0]): "sent", str(ids[1]): "sent", **{str(pk): "pending" for pk in ids[2:]}}
    assert len(mail.outbox) == 2
    [call] = apply_async.call_args_list
    assert call.kwargs["args"] == [ids[2:]]
    rest = OutboundEmail.objects.filter(pk__in=ids[2:])
    assert {(e.state, e.attempts, e.claimed_at) for e in rest} == {("pending", 0, None)}


def test_it_starts_no_new_email_of_a_batch_once_its_claims_go_unrenewed(settings, time_machine, monkeypatch):
    # As in a worker process, the claims are renewed by the heartbeat
    # (outbox/lease.py), whose first beat comes EMAIL_CLAIM_TIMEOUT_SECONDS/4
    # (5 s) of real time after the batch starts: in this test's time it
    # never comes, as when the database is out of the heartbeat's reach.
    monkeypatch.setattr("requests_app.outbox.lease._heartbeat", None)
    heartbeat_enable()
    settings.EMAIL_BACKEND = f"{__name__}.SlowServerBackend"
    settings.EMAIL_CLAIM_TIMEOUT_SECONDS, settings.EMAIL_BATCH_SECONDS = 20, 30
    time_machine.move_to(timezone.now(), tick=False)
    SlowServerBackend.clock, SlowServerBackend.seconds = time_machine, 6
    ids = [OutboundEmailFactory(to=f"p{n}@example.com").pk for n in range(5)]

    with mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async:
        outcome = send_emails.apply(args=[ids]).get()

    # Sent at 0 and 6 s; at 12 s the claims are older than half their
    # timeout, unrenewed: soon another worker may take them. The rest go
    # back, unclaimed, rather than risk being sent twice.
    assert outcome == {str(ids[0]): "sent", str(ids[1]): "sent", **{str(pk): "pending" for pk in ids[2:]}}
    [call] = apply_async.call_args_list
    assert call.kwargs["args"] == [ids[2:]]


def test_it_gives_back_the_rest_of_a_batch_when_the_database_fails_mid_batch(settings):
    emails = [OutboundEmailFactory(to=f"p{n}@example.com") for n in range(3)]
    ids = [email.pk for email in emails]

    with (
        mock.patch("requests_app.outbox.send.send_claimed", side_effect=OperationalError("server closed")),
        mock.patch("requests_app.tasks.send_emails.apply_async") as apply_async,
        pytest.raises(OperationalError),
    ):
        email_send_many(email_ids=ids)

    # Nothing was sent: every row is pending again, no attempt counted, and
    # queued again at once rather than left to the claim timeout.
    assert {(e.state, e.attempts, e.claimed_at) for e in OutboundEmail.objects.filter(pk__in=ids)} == {
        ("pending", 0, None)
    }
    [call] = apply_async.call_args_list
    assert call.kwargs["args"] == [ids]


def test_it_keeps_an_email_interrupted_by_the_task_time_limit_for_a_retry(settings):
    settings.EMAIL_BACKEND = f"{__name__}.TimeLimitBackend"
    email = OutboundEmailFactory()

    with mock.patch("requests_app.tasks.send_emails.apply_async"):
        outcome = send_emails.apply(args=[[email.pk]]).get()

    email.refresh_from_db()
    assert outcome == {str(email.pk): "pending"}
    assert (email.state, email.attempts) == ("pending", 1)


def test_it_sends_an_email_named_twice_in_one_message_once(real_smtp):
    email = OutboundEmailFactory(to="twice@example.com")

    outcome = send_emails.apply(args=[[email.pk, email.pk]]).get()

    assert outcome == {str(email.pk): "sent"}
    assert len(real_smtp.to("twice@example.com")) == 1


class TimeLimitBackend(LocmemBackend):
    """The task's soft time limit strikes while a message is being sent."""

    def send_messages(self, messages: Any) -> int:
        raise SoftTimeLimitExceeded()
