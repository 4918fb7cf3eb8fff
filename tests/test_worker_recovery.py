"""The recovery drill: a worker killed in the middle of a burst, against a
real worker, Redis, PostgreSQL and SMTP server (tests/support/stack.py).

Thirty patients submit; the SMTP server accepts a few messages, then hangs
on every later one, so both of the worker's pool processes are waiting on
it, each holding a claimed row, when the worker is SIGKILLed. Its messages
stay unacknowledged in Redis (for the visibility timeout, an hour) and its
claims stop being renewed. Every email of those thirty requests must reach
the server within a minute of a replacement worker starting, and none
twice beyond the one instant the guarantee names (killed after the server
accepted a message, before its row was marked sent).
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections import Counter

import pytest

from .support.patients import patient_form
from .support.polling import wait_for
from .support.stack import Stack

pytest_plugins = ["tests.support.stack"]
pytestmark = pytest.mark.services

# The production defaults throughout: EMAIL_CLAIM_TIMEOUT_SECONDS is 20.
STACK_ENV: dict[str, str] = {}

RECOVERY_BOUND_SECONDS = 60
SUBMISSIONS = 30
ACCEPTED_BEFORE_THE_STALL = 12

_OUTBOX_ID = re.compile(r"<outbox-(\d+)\.")


def outbox_rows(stack: Stack, references: list[str]) -> list[dict]:
    return stack.sql(
        "SELECT e.id, e.kind, e.state, e.attempts FROM requests_app_outboundemail e "
        "JOIN requests_app_resetrequest r ON r.id = e.reset_id WHERE r.reference = ANY(%s) ORDER BY e.id",
        (references,),
    )


def copies_received(stack: Stack) -> Counter[int]:
    """Messages the SMTP server accepted, by outbox id (from the Message-ID)."""
    found = (_OUTBOX_ID.match(str(m.message.get("Message-ID", ""))) for m in stack.smtp.messages)
    return Counter(int(match.group(1)) for match in found if match)


def first_arrivals(stack: Stack) -> dict[int, float]:
    arrivals: dict[int, float] = {}
    for message in stack.smtp.messages:
        match = _OUTBOX_ID.match(str(message.message.get("Message-ID", "")))
        if match:
            arrivals.setdefault(int(match.group(1)), message.received_at)
    return arrivals


def test_it_sends_every_email_of_a_worker_killed_mid_send_within_a_minute_of_a_replacement_starting(
    stack: Stack,
) -> None:
    # Beat's sweep each minute would find these rows too, sooner or later;
    # without it, what sends them is the replacement's own recovery.
    assert stack.beat is not None
    stack.beat.stop()
    stall = stack.smtp.stall(accepted=ACCEPTED_BEFORE_THE_STALL)

    forms = [patient_form() for _ in range(SUBMISSIONS)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        references = [submitted.reference for submitted in pool.map(stack.submit, forms)]
    # Both pool processes are each in the middle of a message the server
    # has not accepted: their rows are claimed ("sending").
    stall.wait_holding(stack.worker_concurrency, diagnostics=stack.diagnostics)
    assert {row["state"] for row in outbox_rows(stack, references)} >= {"sending"}

    stack.kill_worker()
    at_kill = outbox_rows(stack, references)
    accepted = copies_received(stack)
    # The instant the guarantee names: accepted by the server, not yet
    # marked sent. Only these rows may go out twice.
    may_go_twice = {row["id"] for row in at_kill if row["state"] == "sending" and row["id"] in accepted}
    claimed_by_the_dead = {row["id"] for row in at_kill if row["state"] == "sending"}
    wait_for(lambda: stall.holding == 0, timeout=10, what="the killed worker's SMTP sessions to close")
    stall.release()

    started = time.monotonic()
    stack.start_worker()
    wanted = {row["id"] for row in at_kill}
    assert len(wanted) == 2 * SUBMISSIONS  # an acknowledgment and a staff notice each
    wait_for(
        lambda: wanted <= set(copies_received(stack)),
        timeout=RECOVERY_BOUND_SECONDS,
        what="every email of the thirty requests at the SMTP server",
        interval=0.2,
        diagnostics=lambda: (
            f"missing outbox ids: {sorted(wanted - set(copies_received(stack)))}\n{stack.diagnostics()}"
        ),
    )
    arrivals = first_arrivals(stack)
    last = max(arrivals[email_id] for email_id in wanted) - started
    recovered = max(arrivals[email_id] for email_id in claimed_by_the_dead) - started
    print(
        f"\n{len(claimed_by_the_dead)} claims held by the killed worker; the last of them arrived "
        f"{recovered:.1f}s, the last email {last:.1f}s after the replacement was started"
    )
    assert last <= RECOVERY_BOUND_SECONDS

    stack.settle()
    copies = copies_received(stack)
    twice = {email_id: copies[email_id] for email_id in wanted if copies[email_id] > 1}
    assert set(twice) <= may_go_twice, twice
    rows = outbox_rows(stack, references)
    assert {row["state"] for row in rows} == {"sent"}
    # The dead worker's attempt counts: each of its claimed rows was tried twice.
    assert {row["attempts"] for row in rows if row["id"] in claimed_by_the_dead} == {2}
    # Each request's timeline says its two emails were sent, once each, by
    # no one (the system), however often a row was queued again.
    sent_events = stack.sql(
        "SELECT r.reference, e.actor_id, e.message FROM requests_app_requestevent e "
        "JOIN requests_app_resetrequest r ON r.id = e.reset_id WHERE r.reference = ANY(%s) AND e.kind = 'email_sent'",
        (references,),
    )
    assert Counter(event["reference"] for event in sent_events) == dict.fromkeys(references, 2)
    assert {(event["actor_id"], event["message"]) for event in sent_events} == {
        (None, "Acknowledgment"),
        (None, "New request (staff)"),
    }
