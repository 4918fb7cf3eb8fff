"""Two staff acting on the same request at the same moment, on a real
PostgreSQL database with two real connections: exactly one wins, the other
is told someone else changed it, and the timeline holds one status change.

Each race runs in a ``manage.py shell`` subprocess pointed at a fresh
migrated database (tests/support/postgres.py): two threads, each with its own
database connection, released together by a ``threading.Barrier``. Races
come in two kinds:

- *free*: both threads start at the same instant and the timing is what it
  is, as with two people clicking at once;
- *overlapped*: a second barrier holds each thread just after it has read
  the request and checked the move, so both have seen ``new`` before either
  writes. Only the conditional UPDATE (services.workflow._move) or the row lock
  (services.reset_assign) can then tell the winner from the loser: this
  is the case a read-then-write without them gets wrong.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support.postgres import fresh_postgres_database
from .support.processes import offline_production_env, run_manage

pytest_plugins = ["tests.support.requirements"]
pytestmark = pytest.mark.services

ROUNDS = 20

# Runs inside `manage.py shell -c`, on the PostgreSQL database of the module.
RACE = r"""
import json
import threading
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from requests_app import exceptions, services
from requests_app.models import OutboundEmail, ResetRequest
from requests_app.references import new_reference

assert connection.vendor == "postgresql", connection.vendor
User = get_user_model()
ALICE, _ = User.objects.get_or_create(username="alice", defaults={"is_staff": True, "is_superuser": True})
BOB, _ = User.objects.get_or_create(username="bob", defaults={"is_staff": True, "is_superuser": True})
OVERLAP = threading.local()


def overlapping(allows):
    # Called by services.workflow.check_move right after _move's read, before its
    # UPDATE: in an overlapped race both threads wait here for each other.
    def wrapper(self, action):
        allowed = allows(self, action)
        barrier = getattr(OVERLAP, "barrier", None)
        if barrier is not None:
            OVERLAP.barrier = None
            for _ in range(OVERLAP.waits):
                barrier.wait()
        return allowed
    return wrapper


ResetRequest.allows = overlapping(ResetRequest.allows)


def new_request(number):
    now = timezone.now()
    return ResetRequest.objects.create(
        reference=new_reference(), reason="link_expired", first_name="Race", last_name=f"Patient{number}",
        email=f"race-{new_reference()}@example.com", phone="+15552013344",
        appointment_date=(now - timedelta(days=5)).date(), submitted_at=now, due_at=now + timedelta(hours=24),
    )


def run_pair(actions, overlapped):
    # Each action runs in its own thread, on its own database connection.
    start = threading.Barrier(len(actions), timeout=10)
    inner = threading.Barrier(len(actions), timeout=10) if overlapped else None
    results = {}

    def run(name, action):
        try:
            connection.ensure_connection()  # connect before the start line
            OVERLAP.barrier, OVERLAP.waits = inner, 1
            start.wait()
            results[name] = action()
        except exceptions.ConcurrentChange as exc:
            results[name] = "ConcurrentChange: " + str(exc)
        except Exception as exc:
            results[name] = "ERROR " + type(exc).__name__ + ": " + str(exc)
        finally:
            OVERLAP.barrier = None
            connections.close_all()

    threads = [threading.Thread(target=run, args=item) for item in actions.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def state(rr):
    rr.refresh_from_db()
    return {
        "status": rr.status,
        "close_reason": rr.close_reason,
        "assignee": rr.assignee.username if rr.assignee else None,
        "status_events": list(
            rr.events.filter(kind="status").values_list("from_status", "to_status", "actor__username")),
        "assigned_events": list(rr.events.filter(kind="assigned").values_list("actor__username", "message")),
        "closure_emails": rr.emails.filter(kind=OutboundEmail.Kind.CLOSED).count(),
    }


def services_start_vs_close(rr, overlapped):
    return run_pair({
        "start": lambda: services.reset_start(reset_id=rr.pk, actor=ALICE, expected_status="new") and "won",
        "close": lambda: services.reset_close(
            reset_id=rr.pk, actor=BOB, reason="duplicate", expected_status="new") and "won",
    }, overlapped)


def services_start_vs_assign(rr, overlapped):
    # Overlapped: Alice's start has read the request (new, nobody holds it)
    # when Bob's "assign to me" runs to its commit; then her UPDATE goes.
    def start():
        OVERLAP.waits = 2  # once when she has read, once before she writes
        return services.reset_start(reset_id=rr.pk, actor=ALICE, expected_status="new") and "won"

    def assign():
        barrier, OVERLAP.barrier = OVERLAP.barrier, None
        if barrier is not None:
            barrier.wait()  # Alice has read the request
        try:
            services.reset_assign(
                reset_id=rr.pk, assignee=BOB, actor=BOB, expected_status="new", expected_assignee_id=None)
            return "won"
        finally:
            if barrier is not None:
                barrier.wait()  # Bob's assignment is committed: Alice writes
    return run_pair({"start": start, "assign": assign}, overlapped)


def admin_start_vs_close(rr, overlapped):
    def post(user, move, data):
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        url = f"/admin/requests_app/resetrequest/{rr.pk}/{move}/"
        def action():
            response = client.post(url, {"expected_status": "new", **data})
            assert response.status_code == 302, response.status_code
            return " | ".join(
                f"{message.level_tag}: {message}" for message in get_messages(response.wsgi_request))
        return action
    # Logged in before the race: only the two POSTs run at the same moment.
    return run_pair({
        "start": post(ALICE, "start", {}),
        "close": post(BOB, "close", {"reason": "duplicate", "note": ""}),
    }, overlapped)


def main(scenario, rounds, overlapped):
    race = globals()[scenario]
    report = []
    for number in range(rounds):
        rr = new_request(number)
        results = race(rr, overlapped)
        report.append({"reference": rr.reference, "results": results, **state(rr)})
    print("REPORT=" + json.dumps(report))
"""


@pytest.fixture(scope="module")
def race_env(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A production-like environment on a fresh PostgreSQL database of this
    module's own (migrated once; each race makes its own requests)."""
    with fresh_postgres_database(postgres_server) as url:
        # Emails stay in the outbox (offline_production_env: no broker).
        yield offline_production_env(
            var_dir=Path(tmp_path_factory.mktemp("race-var")), site_url="http://localhost", database_url=url
        )


def race(env: dict[str, str], scenario: str, *, overlapped: bool, rounds: int = ROUNDS) -> list[dict[str, Any]]:
    code = f"{RACE}\nmain({scenario!r}, {rounds}, {overlapped})\n"
    result = run_manage("shell", "-c", code, env=env, timeout=240)
    match = re.search(r"^REPORT=(.*)$", result.stdout, re.M)
    assert match, f"no report\n{result.stdout}\n{result.stderr}"
    report = json.loads(match[1])
    assert len(report) == rounds
    return report


def winners(round_: dict[str, Any]) -> list[str]:
    return [name for name, outcome in round_["results"].items() if outcome == "won"]


def assert_start_or_close_won_alone(report: list[dict[str, Any]]) -> None:
    for round_ in report:
        results = round_["results"]
        assert len(winners(round_)) == 1, round_
        (winner,) = winners(round_)
        loser = "close" if winner == "start" else "start"
        assert results[loser].startswith("ConcurrentChange: "), round_
        assert "changed by someone else" in results[loser], round_
        if winner == "start":
            assert round_["status_events"] == [["new", "in_progress", "alice"]], round_
            assert (round_["assignee"], round_["close_reason"], round_["closure_emails"]) == ("alice", "", 0)
        else:
            assert round_["status_events"] == [["new", "closed", "bob"]], round_
            assert (round_["assignee"], round_["close_reason"], round_["closure_emails"]) == (None, "duplicate", 1)
            assert round_["assigned_events"] == [], round_


@pytest.mark.parametrize("overlapped", [False, True], ids=["free", "overlapped"])
def test_it_lets_exactly_one_of_start_and_close_win_at_the_same_moment(race_env, overlapped):
    report = race(race_env, "services_start_vs_close", overlapped=overlapped)

    assert_start_or_close_won_alone(report)
    if overlapped:
        # Both had read "new": only the conditional UPDATE stopped the loser.
        assert all("at the same time" in str(r["results"]) for r in report), report


@pytest.mark.parametrize("overlapped", [False, True], ids=["free", "overlapped"])
def test_it_never_tells_two_staff_that_the_same_request_is_theirs(race_env, overlapped):
    """Starting an unassigned request takes it. Bob taking it at that very
    moment must not be overwritten behind his back: he was told it is his.
    Bob first, then Alice's start is a fine order (she starts Bob's
    request); Alice's start taking it after Bob did is not. Overlapped:
    Bob's assignment commits between Alice's read and her write, and her
    start must lose."""
    report = race(race_env, "services_start_vs_assign", overlapped=overlapped)

    for round_ in report:
        results = round_["results"]
        assert winners(round_), round_
        for name, outcome in results.items():
            assert outcome == "won" or outcome.startswith("ConcurrentChange: "), (name, round_)
        if results["assign"] == "won":
            assert round_["assignee"] == "bob", round_
            assert round_["assigned_events"] == [["bob", "Assigned to bob"]], round_
        else:
            assert round_["assignee"] == "alice", round_
            assert round_["assigned_events"] == [["alice", "Assigned to alice"]], round_
        if results["start"] == "won":
            assert round_["status_events"] == [["new", "in_progress", "alice"]], round_
        else:
            assert (round_["status"], round_["status_events"]) == ("new", []), round_
        if overlapped:
            assert results["assign"] == "won", round_
            assert "at the same time" in results["start"], round_


@pytest.mark.parametrize("overlapped", [False, True], ids=["free", "overlapped"])
def test_it_tells_the_slower_of_two_staff_in_the_admin_that_someone_else_changed_it(race_env, overlapped):
    report = race(race_env, "admin_start_vs_close", overlapped=overlapped, rounds=10)

    seen = Counter()
    for round_ in report:
        messages = round_["results"]
        assert not any(text.startswith("ERROR") for text in messages.values()), round_
        successes = [name for name, text in messages.items() if text.startswith("success: ")]
        refusals = [name for name, text in messages.items() if text.startswith("error: ")]
        assert len(successes) == 1 and len(refusals) == 1, round_
        assert "changed by someone else" in messages[refusals[0]], round_
        expected_events = {"start": [["new", "in_progress", "alice"]], "close": [["new", "closed", "bob"]]}
        assert round_["status_events"] == expected_events[successes[0]], round_
        seen[successes[0]] += 1
    assert sum(seen.values()) == len(report)


# Runs inside `manage.py shell -c`: one thread holds row locks on half of a
# batch of outbox rows (another worker in the middle of claiming them) while
# this one claims the whole batch.
CLAIM_WHILE_LOCKED = r"""
import json
import threading
import time

from django.db import connections, transaction
from django.utils import timezone

from requests_app.models import OutboundEmail
from requests_app.outbox.send import claim_emails

now = timezone.now()
ids = [
    OutboundEmail.objects.create(
        kind="staff_overdue_digest", to="staff@example.com", created_at=now, next_attempt_at=now
    ).pk
    for _ in range(10)
]
locked, release = threading.Event(), threading.Event()


def other_worker():
    with transaction.atomic():
        list(OutboundEmail.objects.select_for_update().filter(pk__in=ids[:5]))
        locked.set()
        release.wait(20)
    connections.close_all()


thread = threading.Thread(target=other_worker)
thread.start()
assert locked.wait(20)
started = time.monotonic()
first = sorted(claim_emails(ids))
seconds = time.monotonic() - started
release.set()
thread.join(20)
second = sorted(claim_emails(ids))
third = sorted(claim_emails(ids))
states = sorted(set(OutboundEmail.objects.filter(pk__in=ids).values_list("state", "attempts")))
print("REPORT=" + json.dumps({
    "ids": ids, "first": first, "second": second, "third": third, "seconds": seconds, "states": states,
}))
"""


def test_it_claims_the_rows_of_a_batch_another_worker_holds_later_without_waiting(race_env):
    result = run_manage("shell", "-c", CLAIM_WHILE_LOCKED, env=race_env, timeout=120)
    match = re.search(r"^REPORT=(.*)$", result.stdout, re.M)
    assert match, f"no report\n{result.stdout}\n{result.stderr}"
    report = json.loads(match[1])
    ids = report["ids"]

    # The locked half is skipped, not waited for (SKIP LOCKED) ...
    assert report["first"] == ids[5:]
    assert report["seconds"] < 5
    # ... and claimed once the other transaction has ended; nothing twice.
    assert report["second"] == ids[:5]
    assert report["third"] == []
    assert report["states"] == [["sending", 1]]
