"""Email delivery under real faults: the broker down at submit time,
a worker killed mid-send, SMTP refusing, the same task twice, two sweepers,
a burst. Each runs against a real PostgreSQL database, a redis-server of
this module's own (so that stopping it disturbs nobody), gunicorn, a Celery
worker and beat, and an aiosmtpd server.

The delivery guarantee, and why (the two worker-kill tests pin it down):

- The outbox row is written with the request, so a broker outage loses
  nothing: the row stays pending and the sweeper queues it again.
- Sending claims the row (pending -> sending, under a row lock and a
  conditional UPDATE), so a second delivery of the task, or a second
  sweeper, finds it claimed or sent and sends nothing.
- A worker killed mid-send leaves its Celery message unacknowledged in Redis
  (acks_late); Redis hands it out again only after the visibility timeout
  (an hour). What brings the email back sooner is the claim itself: a live
  worker renews it, a dead one does not, and a claim not renewed for
  EMAIL_CLAIM_TIMEOUT_SECONDS is queued again (by the sweeper, or by a
  worker as it starts) and the new worker sends. The late redelivery then
  finds the row sent and does nothing. tests/test_worker_recovery.py holds
  the drill of a whole burst.
- So: exactly once if the worker dies before the SMTP server accepted the
  message. If the server had accepted it (250 to DATA) and the worker dies
  before the row is marked sent, the stale claim is sent again: at least
  once, with the same Message-ID so mail clients show one copy. Each row is
  marked sent right after its 250, before the next message of its batch and
  before QUIT, so that window is the instant between the 250 and the UPDATE,
  and a death during QUIT does not double the email. Exactly once across
  that instant is not possible with SMTP: the worker cannot know whether a
  250 it never read was sent.
"""

from __future__ import annotations

import concurrent.futures
import re
import time

import pytest

from .support.http_client import Browser
from .support.patients import patient_form, personal_data_of
from .support.polling import wait_for
from .support.processes import STAFF_NOTIFY_EMAIL
from .support.redis_servers import RedisMonitor
from .support.stack import Stack, reference_from_location

pytest_plugins = ["tests.support.stack"]
pytestmark = pytest.mark.services

CLAIM_TIMEOUT_SECONDS = 5

STACK_REDIS = "throwaway"
STACK_ENV = {
    # A claim not renewed for this long belongs to a dead worker (production: 20 s).
    "EMAIL_CLAIM_TIMEOUT_SECONDS": str(CLAIM_TIMEOUT_SECONDS),
    # Backoff ~1 s, 2 s … instead of ~30 s, 1 min … (production default).
    "EMAIL_RETRY_BASE_SECONDS": "1",
    # A pool process says QUIT on its kept SMTP connection after 3 s idle
    # instead of 10 (production default), where the QUIT case holds it.
    "EMAIL_SMTP_IDLE_SECONDS": "3",
}


def age_outbox_rows(stack: Stack, reference: str) -> None:
    """Make the request's pending emails look a few minutes old, as they are
    by the time beat's sweep runs after an outage; the sweeper leaves rows
    younger than a minute to their own on-commit publish."""
    stack.sql(
        "UPDATE requests_app_outboundemail SET next_attempt_at = now() - interval '5 minutes' "
        "WHERE state = 'pending' AND reset_id = (SELECT id FROM requests_app_resetrequest WHERE reference = %s)",
        (reference,),
    )


def wait_until_claim_is_stale(stack: Stack, email_id: int) -> None:
    wait_for(
        lambda: stack.sql(
            "SELECT 1 FROM requests_app_outboundemail WHERE id = %s AND claimed_at < now() - make_interval(secs => %s)",
            (email_id, CLAIM_TIMEOUT_SECONDS + 0.5),
        ),
        timeout=CLAIM_TIMEOUT_SECONDS + 10,
        what=f"the claim on email {email_id} to go stale",
        interval=0.2,
    )


def staff_notices_of(stack: Stack, reference: str) -> list:
    return [m for m in stack.smtp.to(STAFF_NOTIFY_EMAIL) if m.contains(reference)]


def test_it_confirms_at_once_while_redis_is_down_and_the_sweeper_sends_the_acknowledgment_once(stack: Stack) -> None:
    # The cache (rate limits) is on the same Redis as the broker, as in the
    # compose file: the outage takes both away.
    form = patient_form()
    browser = stack.browser()
    assert browser.get("/reset/").status == 200
    assert stack.redis_server is not None
    stack.redis_server.stop()
    try:
        started = time.monotonic()
        response = browser.submit_form("/reset/", form)
        confirmation = browser.get(response.location)
        took = time.monotonic() - started

        assert response.status == 303, response.text[:2000]
        assert confirmation.status == 200
        assert took < 2, f"the patient waited {took:.2f}s for the confirmation"
        print(f"with Redis down the confirmation took {took:.2f}s")
        reference = reference_from_location(response.location)
        rows = stack.outbox(reference)
        assert {(row["kind"], row["state"], row["attempts"]) for row in rows} == {
            ("acknowledgment", "pending", 0),
            ("staff_new_request", "pending", 0),
        }
    finally:
        stack.redis_server.start()

    age_outbox_rows(stack, reference)
    # The worker reconnects on its own back-off (2 s, 4 s …). (Beat may sweep
    # first; either way each row is queued at least once.)
    stack.sweep(timeout=60)
    stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    wait_for(lambda: staff_notices_of(stack, reference), timeout=30, what="the staff notification")
    stack.settle()
    assert len(stack.smtp.to(form["email"])) == 1
    assert stack.acknowledgment(reference)["state"] == "sent"


def test_it_sends_once_when_the_worker_is_killed_before_the_server_accepted_the_message(stack: Stack) -> None:
    # The server holds its answer to DATA: the message has been sent but not
    # accepted. The worker dies (SIGKILL to it and its pool: no cleanup, no
    # ack to the broker), the server drops the unaccepted message, as an MTA
    # does when the client goes away. The row stays claimed ("sending");
    # once the claim has not been renewed for EMAIL_CLAIM_TIMEOUT_SECONDS
    # the sweeper queues it again and the new worker sends it: exactly one
    # delivery.
    form = patient_form()
    hold = stack.smtp.hold(form["email"], at="DATA")

    submitted = stack.submit(form)
    hold.wait_reached()
    ack = stack.acknowledgment(submitted.reference)
    assert (ack["state"], ack["attempts"]) == ("sending", 1)
    stack.kill_worker()
    hold.wait_client_gone()
    stack.start_worker()
    wait_until_claim_is_stale(stack, ack["id"])
    stack.sweep()

    stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    stack.settle()
    assert len(stack.smtp.to(form["email"])) == 1
    ack = stack.acknowledgment(submitted.reference)
    assert (ack["state"], ack["attempts"]) == ("sent", 2)


def test_it_does_not_send_again_when_the_worker_is_killed_after_the_server_accepted_the_message(
    stack: Stack,
) -> None:
    # The server accepted the message (250 to DATA) and holds its answer to
    # QUIT; the worker dies there. The message went out, so it must not go
    # out again: the row has to be marked sent before the connection is
    # closed. What is left is the instant between the server's 250 and that
    # UPDATE: a death exactly there sends the message a second time.
    form = patient_form()
    hold = stack.smtp.hold(form["email"], at="QUIT")

    submitted = stack.submit(form)
    hold.wait_reached()
    assert len(stack.smtp.to(form["email"])) == 1
    ack = stack.acknowledgment(submitted.reference)
    stack.kill_worker()
    hold.wait_client_gone()
    stack.start_worker()
    wait_until_claim_is_stale(stack, ack["id"])
    stack.sweep()

    stack.settle()
    assert len(stack.smtp.to(form["email"])) == 1
    assert stack.acknowledgment(submitted.reference)["state"] == "sent"


def test_a_worker_sends_the_next_submissions_over_the_smtp_connections_it_kept(stack: Stack) -> None:
    # Each pool process keeps its connection from one batch to the next
    # (outbox/kept_connection.py): four submissions, one after another, go
    # over at most one connection per pool process, not one each.
    forms = [patient_form() for _ in range(4)]
    for form in forms:
        stack.submit(form)
        stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)

    sessions = {message.session for form in forms for message in stack.smtp.to(form["email"])}
    assert len(sessions) <= stack.worker_concurrency < len(forms)


def test_it_keeps_the_claim_of_a_worker_waiting_on_a_slow_server_longer_than_the_claim_timeout(stack: Stack) -> None:
    # The server holds its answer to DATA for three claim timeouts. The
    # worker is alive and renews its claim all along (outbox/lease.py), so
    # neither the sweeper nor a second delivery of the task to the other
    # pool process takes the row: the email goes out once, on one attempt.
    form = patient_form()
    [reference] = stack.submit_offline(form)
    ack = stack.acknowledgment(reference)
    hold = stack.smtp.hold(form["email"], at="DATA")
    task_id = stack.publish("requests_app.tasks.send_emails", [[ack["id"]]], queue="patient_email")
    hold.wait_reached()
    claimed_at = stack.acknowledgment(reference)["claimed_at"]

    wait_for(
        lambda: stack.sql(
            "SELECT 1 FROM requests_app_outboundemail WHERE id = %s AND claimed_at > %s + make_interval(secs => %s)",
            (ack["id"], claimed_at, 3 * CLAIM_TIMEOUT_SECONDS),
        ),
        timeout=3 * CLAIM_TIMEOUT_SECONDS + 10,
        what="the claim to be renewed past three claim timeouts",
        interval=0.2,
        diagnostics=stack.diagnostics,
    )
    assert stack.sweep() == 0
    stack.publish("requests_app.tasks.send_emails", [[ack["id"]]], task_id=task_id, queue="patient_email")
    wait_for(lambda: stack.task_outcomes(task_id), timeout=20, what="the second delivery to run")
    assert stack.acknowledgment(reference)["state"] == "sending"
    hold.release()

    stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    stack.settle()
    assert len(stack.smtp.to(form["email"])) == 1
    ack = stack.acknowledgment(reference)
    assert (ack["state"], ack["attempts"]) == ("sent", 1)


def test_it_retries_temporary_smtp_refusals_and_delivers_once_on_the_third_attempt(stack: Stack) -> None:
    form = patient_form()
    stack.smtp.script(form["email"], ["451 4.7.1 Greylisted, try again later"] * 2, at="RCPT")

    submitted = stack.submit(form)

    wait_for(
        lambda: stack.acknowledgment(submitted.reference)["state"] == "sent",
        timeout=30,
        what="the acknowledgment to be sent",
        interval=0.2,
        diagnostics=stack.diagnostics,
    )
    stack.settle()
    ack = stack.acknowledgment(submitted.reference)
    assert ack["attempts"] == 3
    assert stack.smtp.rcpt_attempts[form["email"]] == 3
    assert len(stack.smtp.to(form["email"])) == 1


def test_it_fails_a_permanent_smtp_refusal_at_once_without_retrying(stack: Stack) -> None:
    form = patient_form()
    stack.smtp.script(form["email"], ["550 5.1.1 No such user here"], at="RCPT")

    submitted = stack.submit(form)

    wait_for(
        lambda: stack.acknowledgment(submitted.reference)["state"] == "failed",
        timeout=30,
        what="the acknowledgment to be marked failed",
        interval=0.1,
        diagnostics=stack.diagnostics,
    )
    stack.settle()
    ack = stack.acknowledgment(submitted.reference)
    assert ack["attempts"] == 1
    assert "550" in ack["last_error"]
    assert stack.smtp.rcpt_attempts[form["email"]] == 1
    assert stack.smtp.to(form["email"]) == []
    events = stack.sql(
        "SELECT e.message FROM requests_app_requestevent e JOIN requests_app_resetrequest r ON r.id = e.reset_id "
        "WHERE r.reference = %s AND e.kind = 'email_failed'",
        (submitted.reference,),
    )
    assert len(events) == 1


def test_it_sends_once_when_the_same_task_is_delivered_twice(stack: Stack) -> None:
    # As the broker does after a lost acknowledgment: the same message (same
    # task id) reaches a second worker process while the first is sending.
    form = patient_form()
    [reference] = stack.submit_offline(form)
    ack = stack.acknowledgment(reference)
    hold = stack.smtp.hold(form["email"], at="DATA")

    task_id = stack.publish("requests_app.tasks.send_emails", [[ack["id"]]])
    hold.wait_reached()
    stack.publish("requests_app.tasks.send_emails", [[ack["id"]]], task_id=task_id)
    wait_for(lambda: stack.task_outcomes(task_id), timeout=20, what="the second delivery to run")
    hold.release()

    stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    stack.settle()
    assert len(stack.smtp.to(form["email"])) == 1
    ack = stack.acknowledgment(reference)
    assert (ack["state"], ack["attempts"]) == ("sent", 1)


def test_it_sends_once_when_two_sweepers_race(stack: Stack) -> None:
    # Two schedulers (two beats) sweeping the same pending rows at once, on
    # two worker processes: each queues every row, each row is sent once.
    forms = [patient_form() for _ in range(3)]
    references = stack.submit_offline(*forms)
    for reference in references:
        age_outbox_rows(stack, reference)

    first = stack.publish("requests_app.tasks.sweep_outbox", [])
    second = stack.publish("requests_app.tasks.sweep_outbox", [])

    outcomes = wait_for(
        lambda: (a := stack.task_outcomes(first)) and (b := stack.task_outcomes(second)) and (a[0], b[0]),
        timeout=30,
        what="both sweeps to run",
        diagnostics=stack.diagnostics,
    )
    print(f"the two sweepers: {outcomes}")
    for form in forms:
        stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    for reference in references:
        wait_for(lambda r=reference: staff_notices_of(stack, r), timeout=30, what=f"staff notification of {reference}")
    stack.settle()
    for form in forms:
        assert len(stack.smtp.to(form["email"])) == 1
    for reference in references:
        assert len(staff_notices_of(stack, reference)) == 1
        assert {(row["state"], row["attempts"]) for row in stack.outbox(reference)} == {("sent", 1)}


def test_it_sends_waiting_acknowledgments_before_a_backlog_of_staff_notices(stack: Stack) -> None:
    # A backlog with no worker to take it: six staff notices queued first,
    # then the six patients' acknowledgments, in the queue patients' emails
    # go to (outbox/publish.py: publish_by_queue).
    stack.kill_worker()
    forms = [patient_form() for _ in range(6)]
    references = stack.submit_offline(*forms)
    for reference in references:
        [notice] = stack.outbox(reference, "staff_new_request")
        stack.publish("requests_app.tasks.send_emails", [[notice["id"]]])
    for reference in references:
        ack = stack.acknowledgment(reference)
        stack.publish("requests_app.tasks.send_emails", [[ack["id"]]], queue="patient_email")

    stack.start_worker()

    for reference in references:
        wait_for(lambda r=reference: staff_notices_of(stack, r), timeout=30, what=f"staff notice of {reference}")
    acks = [m for form in forms for m in stack.smtp.to(form["email"])]
    notices = [m for reference in references for m in staff_notices_of(stack, reference)]
    arrived = sorted([(m.received_at, "patient") for m in acks] + [(m.received_at, "staff") for m in notices])
    order = [kind for _, kind in arrived]
    assert order.count("patient") == order.count("staff") == 6
    # The worker takes every acknowledgment before any staff notice; with two
    # pool processes the last acknowledgment may finish beside the first notice.
    assert order[:5] == ["patient"] * 5, order


def test_it_keeps_personal_data_out_of_redis_and_the_logs(stack: Stack) -> None:
    form = patient_form(first_name="Ottoline", last_name="Marchbanks", date_of_birth="1958-12-03", phone="212 555 0199")
    pii = personal_data_of(form)
    assert stack.redis_server is not None
    monitor = RedisMonitor(stack.redis_server.port, stack.root / "redis-monitor.log")
    try:
        submitted = stack.submit(form)
        stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
        wait_for(lambda: staff_notices_of(stack, submitted.reference), timeout=30, what="the staff notification")
        stack.settle()
    finally:
        monitor.stop()

    ack = stack.acknowledgment(submitted.reference)
    broker_traffic = monitor.decoded_text(db=0)
    # The decoding works: the task and its outbox id are there in clear.
    assert "requests_app.tasks.send_emails" in broker_traffic
    assert re.search(rf"\[\[\[{ack['id']}[,\]]", broker_traffic)  # its message, alone or with the staff notice
    all_traffic = monitor.decoded_text()
    logs = {process.name: process.log() for process in stack.processes()}
    assert any("send_emails[" in text for text in logs.values())
    for label, value in pii.items():
        assert value.lower() not in all_traffic.lower(), f"the {label} went through Redis"
        for name, text in logs.items():
            assert value.lower() not in text.lower(), f"the {label} is in the log of {name}"


def test_it_delivers_200_acknowledgments_from_a_burst_each_once(stack: Stack) -> None:
    forms = [patient_form(f"burst-{n:03d}-{time.time_ns() % 10**9}") for n in range(200)]
    # 200 patients, each in a browser of their own, have the form open …
    browsers = [Browser(stack.site_url) for _ in forms]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(lambda browser: browser.load_form("/reset/"), browsers))

    def submit(n: int) -> tuple[str, float]:
        response = browsers[n].post_form(pages[n], forms[n])
        assert response.status == 303, response.text[:1000]
        return forms[n]["email"], time.monotonic()

    # … and send it at once.
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        submitted_at = dict(pool.map(submit, range(len(forms))))
    submitting = time.monotonic() - started

    wanted = set(submitted_at)
    wait_for(
        lambda: wanted <= {m.rcpt_tos[0] for m in stack.smtp.messages},
        timeout=120,
        what="200 acknowledgments",
        interval=0.2,
        diagnostics=lambda: (
            f"{len(wanted - {m.rcpt_tos[0] for m in stack.smtp.messages})} missing\n" + stack.diagnostics()
        ),
    )
    stack.settle(timeout=120)
    acks = [m for m in stack.smtp.messages if m.rcpt_tos[0] in wanted]
    per_patient = {rcpt: [m for m in acks if m.rcpt_tos[0] == rcpt] for rcpt in wanted}
    twice = {rcpt: len(found) for rcpt, found in per_patient.items() if len(found) != 1}
    assert twice == {}
    last = max(m.received_at for m in acks) - started
    slowest = max(found[0].received_at - submitted_at[rcpt] for rcpt, found in per_patient.items())
    print(
        f"\n200 submissions took {submitting:.1f}s; the last acknowledgment arrived {last:.1f}s after the "
        f"burst began; the slowest came {slowest:.1f}s after its confirmation"
    )
