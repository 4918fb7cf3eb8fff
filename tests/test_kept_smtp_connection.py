"""A worker process keeps its SMTP connection from one batch to the next
(requests_app/outbox/kept_connection.py): a submission's two emails cost
less than opening a connection for them. Against a real SMTP server, in
this process, with keeping turned on as a worker process turns it on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError

from requests_app.models import OutboundEmail
from requests_app.outbox import kept_connection
from requests_app.outbox.send import email_send_many

from .factories import OutboundEmailFactory
from .support.polling import wait_for
from .support.smtp import SmtpRecorder

pytest_plugins = ["tests.support.smtp"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def keeping(settings: Any) -> Iterator[None]:
    """As in a worker process (portal_reset/celery.py), with a short idle time."""
    settings.EMAIL_SMTP_IDLE_SECONDS = 2
    kept_connection.keeping_enable()
    try:
        yield
    finally:
        kept_connection.keeping_disable()


def send_batch(count: int = 2) -> list[OutboundEmail]:
    emails = [OutboundEmailFactory(to=f"p{n}@example.com") for n in range(count)]
    results = email_send_many(email_ids=[email.pk for email in emails])
    assert {result.state for result in results.values()} == {"sent"}
    return emails


def sessions(server: SmtpRecorder) -> list[int]:
    return list(dict.fromkeys(message.session for message in server.messages))


def test_two_batches_in_a_row_go_over_one_connection_closed_once_it_has_been_idle(real_smtp, keeping):
    send_batch()
    send_batch()

    assert len(real_smtp.messages) == 4
    assert len(sessions(real_smtp)) == 1
    assert real_smtp.quits == 0
    wait_for(lambda: real_smtp.quits == 1, timeout=10, what="QUIT after EMAIL_SMTP_IDLE_SECONDS idle")

    send_batch()  # a new connection, after the idle one was closed
    assert len(sessions(real_smtp)) == 2


def test_without_keeping_every_batch_says_quit(real_smtp, settings):
    # Outside a worker process (eager tasks, a management command), or with
    # EMAIL_SMTP_IDLE_SECONDS=0.
    settings.EMAIL_SMTP_IDLE_SECONDS = 0
    kept_connection.keeping_enable()

    send_batch()
    send_batch()

    assert len(sessions(real_smtp)) == 2
    assert real_smtp.quits == 2


def test_a_connection_the_server_dropped_is_replaced_and_the_email_sent_on_its_first_attempt(
    real_smtp, keeping, settings
):
    send_batch()
    real_smtp.stop()  # the server goes away with the idle connection
    restarted = SmtpRecorder(port=real_smtp.port)
    restarted.start()
    try:
        [first, second] = send_batch()

        assert len(restarted.messages) == 2
        assert [OutboundEmail.objects.get(pk=e.pk).attempts for e in (first, second)] == [1, 1]
    finally:
        restarted.stop()


def test_a_connection_carries_no_more_messages_than_one_batch_may(real_smtp, keeping, settings):
    settings.EMAIL_BATCH_SIZE = 3

    send_batch()  # 2 on the connection: kept
    send_batch()  # 4: not kept
    assert len(sessions(real_smtp)) == 1
    wait_for(lambda: real_smtp.quits == 1, timeout=2, what="QUIT right after the batch")

    send_batch()
    assert len(sessions(real_smtp)) == 2


def test_a_connection_opened_with_other_settings_is_closed_not_used(real_smtp, keeping, settings):
    send_batch()
    other = SmtpRecorder()
    other.start()
    try:
        settings.EMAIL_PORT = other.port

        send_batch()

        assert len(real_smtp.messages) == 2
        assert len(other.messages) == 2
        assert real_smtp.quits == 1
    finally:
        other.stop()


def test_a_connection_that_failed_is_not_handed_to_the_next_batch(real_smtp, keeping):
    real_smtp.script("p0@example.com", ["451 4.3.0 Try again later"])
    email = OutboundEmailFactory(to="p0@example.com")

    result = email_send_many(email_ids=[email.pk])[email.pk]

    assert result.state == OutboundEmail.State.PENDING  # retried later, with its backoff
    assert real_smtp.quits == 1  # closed at the failure, as before
    send_batch()
    assert len(sessions(real_smtp)) == 1  # the new batch's own connection


def test_a_database_failure_at_the_claim_leaves_the_connection_to_the_next_batch(real_smtp, keeping):
    send_batch()
    email = OutboundEmailFactory()
    down = OperationalError("the database is down")
    with mock.patch("requests_app.outbox.send.claim_emails", side_effect=down), pytest.raises(OperationalError):
        email_send_many(email_ids=[email.pk])

    send_batch()
    assert len(sessions(real_smtp)) == 1
    assert real_smtp.quits == 0


@pytest.mark.parametrize(("given", "read"), [(None, "10"), ("0", "0"), ("45", "45")])
def test_the_idle_time_comes_from_email_smtp_idle_seconds(tmp_path: Path, given: str | None, read: str) -> None:
    result = settings_of_a_new_process(tmp_path, given)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == read


def test_a_negative_idle_time_is_refused_naming_it(tmp_path: Path) -> None:
    result = settings_of_a_new_process(tmp_path, "-1")

    assert result.returncode != 0
    assert "EMAIL_SMTP_IDLE_SECONDS must be 0 or a positive whole number" in result.stderr


def settings_of_a_new_process(tmp_path: Path, given: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("EMAIL_SMTP_IDLE_SECONDS", "VAR_DIR")}
    env.update({"DEBUG": "1", "VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal_reset.settings"})
    if given is not None:
        env["EMAIL_SMTP_IDLE_SECONDS"] = given
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.EMAIL_SMTP_IDLE_SECONDS)"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
