"""On PostgreSQL a new patient's submission is one statement (an INSERT ...
ON CONFLICT against the partial unique index of open requests, feeding the
outbox, timeline and family inserts), and a submission past the per-email
limit is one statement too; the rest of the suite runs on SQLite, where the
ORM's path does the same. These tests run the PostgreSQL path on a real
server and hold it to the ORM's: the same rows, column by column; a
patient's second submission attached, not stored twice; two first
submissions of one patient at the same moment; a reference already taken;
a held submission released inside its own transaction.

Each scenario runs in a ``manage.py shell`` subprocess on a fresh migrated
database (tests/support/postgres.py), as tests/test_concurrency_postgres.py
does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support.postgres import fresh_postgres_database
from .support.processes import offline_production_env, run_manage

pytest_plugins = ["tests.support.requirements"]
pytestmark = pytest.mark.services

SCRIPT = r"""
import json
import threading
import uuid
from datetime import date, timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from requests_app import services
from requests_app.models import FamilyMember, HeldSubmission, OutboundEmail, RequestEvent, ResetRequest
from requests_app.services import submission as submission_module
from requests_app.outbox import queue as queue_module
from requests_app.working_hours import due_after

assert connection.vendor == "postgresql", connection.vendor
PUBLISHED = []
submission_module.publish_together = lambda queued: PUBLISHED.append([kind for _, kind in queued])
queue_module.publish_together = lambda queued: PUBLISHED.append([kind for _, kind in queued])


def patient(email, **extra):
    return services.Submission(
        first_name="Ana", last_name="Ruiz", date_of_birth=date(1979, 11, 7), email=email,
        phone="+16175550142", appointment_date=timezone.localdate() - timedelta(days=5),
        reason="link_expired", details="Locked out", language="es", **extra,
    )


FAMILY = (("Luis", "Ruiz", date(2010, 3, 1)), ("Eva", "Ruiz", date(2012, 6, 2)))
SKIP = {"id", "reference", "status_secret", "email", "submitted_at", "due_at", "updated_at"}


def statements(call):
    seen = []
    def count(execute, sql, params, many, context):
        seen.append(sql.split()[0])
        return execute(sql, params, many, context)
    with connection.execute_wrapper(count):
        result = call()
    return result, seen


def rows_of(reset):
    reset = ResetRequest.objects.get(pk=reset.pk)
    request = {
        f.attname: str(getattr(reset, f.attname)) for f in ResetRequest._meta.concrete_fields if f.attname not in SKIP
    }
    request["due_as_promised"] = reset.due_at == due_after(reset.submitted_at)
    emails = [
        {f.attname: str(getattr(e, f.attname)) for f in OutboundEmail._meta.concrete_fields
         if f.attname not in {"id", "reset_id", "to", "created_at", "next_attempt_at"}}
        | {"to": "patient" if e.to == reset.email else e.to, "due_when_made": e.next_attempt_at == e.created_at,
           "made_at_submission": abs(e.created_at - reset.submitted_at) < timedelta(seconds=1)}
        for e in reset.emails.order_by("pk")
    ]
    events = [
        {f.attname: str(getattr(e, f.attname)) for f in RequestEvent._meta.concrete_fields
         if f.attname not in {"id", "reset_id", "created_at"}}
        | {"at_submission": abs(e.created_at - reset.submitted_at) < timedelta(seconds=1)}
        for e in reset.events.order_by("created_at", "pk")
    ]
    family = [(m.first_name, m.last_name, str(m.date_of_birth)) for m in reset.family_members.order_by("pk")]
    return {"request": request, "emails": emails, "events": events, "family": family}


def same_rows():
    fast, fast_statements = statements(
        lambda: services.reset_submit(submission=patient("fast@example.com", family=FAMILY)))
    with transaction.atomic():
        orm = submission_module._submit_once(patient("orm@example.com", family=FAMILY), "ORMX-PATH")
    first_rows = {"fast": rows_of(fast.reset), "orm": rows_of(orm.reset)}
    # Each patient again, each way: attached, with the same rows.
    again, again_statements = statements(
        lambda: services.reset_submit(submission=patient("fast@example.com", family=FAMILY[:1])))
    with transaction.atomic():
        orm_again = submission_module._submit_once(patient("orm@example.com", family=FAMILY[:1]), "ORMX-LATE")
    return {
        "again": rows_of(again.reset), "orm_again": rows_of(orm_again.reset), "again_statements": again_statements,
        "again_created": [again.created, orm_again.created],
        **first_rows, "fast_statements": fast_statements,
        "created": fast.created, "in_memory_pk": fast.reset.pk, "in_memory_reference": fast.reset.reference,
        "stored_reference": ResetRequest.objects.get(pk=fast.reset.pk).reference, "published": PUBLISHED,
    }


def second_submission():
    first = services.reset_submit(submission=patient("again@example.com"))
    PUBLISHED.clear()
    second, seen = statements(lambda: services.reset_submit(submission=patient("again@example.com")))
    reset = ResetRequest.objects.get(email="again@example.com")
    return {
        "references": [first.reset.reference, second.reset.reference, reset.reference],
        "created": [first.created, second.created],
        "requests": ResetRequest.objects.filter(email="again@example.com").count(),
        "kinds": list(reset.events.order_by("created_at", "pk").values_list("kind", flat=True)),
        "emails": list(reset.emails.order_by("pk").values_list("kind", flat=True)),
        "statements": seen, "published": PUBLISHED,
    }


def past_email_limit():
    filed = services.reset_submit(submission=patient("limited@example.com"))
    emails_before = OutboundEmail.objects.count()
    reference, seen = statements(
        lambda: services.reset_submit_past_email_limit(submission=patient("limited@example.com")))
    held_reference, held_seen = statements(
        lambda: services.reset_submit_past_email_limit(submission=patient("nobody-open@example.com")))
    reset = ResetRequest.objects.get(pk=filed.reset.pk)
    last = reset.events.order_by("created_at", "pk").last()
    return {
        "references": [filed.reset.reference, reference],
        "last_event": [last.kind, last.message.splitlines()[-1], last.actor_id],
        "new_emails": OutboundEmail.objects.count() - emails_before,
        "statements": seen, "held_statements": held_seen,
        "held": list(HeldSubmission.objects.filter(reference=held_reference).values_list("why", "email")),
    }


def at_the_same_moment(rounds=10):
    outcomes = []
    for number in range(rounds):
        barrier = threading.Barrier(2)
        results = []
        def submit():
            try:
                barrier.wait()
                result = services.reset_submit(submission=patient(f"race{number}@example.com"))
                results.append((result.created, result.reset.reference))
            except Exception as exc:
                results.append(("error", repr(exc)))
            finally:
                connections.close_all()
        threads = [threading.Thread(target=submit) for _ in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        reset = ResetRequest.objects.get(email=f"race{number}@example.com")
        outcomes.append({
            "results": sorted(map(list, results), key=str),
            "reference": reset.reference,
            "emails": sorted(reset.emails.values_list("kind", flat=True)),
            "events": sorted(reset.events.values_list("kind", flat=True)),
        })
    return outcomes


def reference_taken():
    taken = services.reset_submit(submission=patient("first@example.com")).reset.reference
    draws = iter([taken, "ZZZZ-ZZZZ"])
    submission_module.new_reference = lambda: next(draws)
    second = services.reset_submit(submission=patient("second@example.com"))
    stored = ResetRequest.objects.get(pk=second.reset.pk).reference
    return {"taken": taken, "second": second.reset.reference, "stored": stored}


def release_held():
    from django.contrib.auth import get_user_model
    staff = get_user_model().objects.create(username="nora", is_staff=True)
    held = services.held_create(submission=patient("held@example.com", family=FAMILY), why="too_fast")
    taken = services.reset_submit(submission=patient("other@example.com")).reset.reference
    # The held reference is free; a second release of a row whose reference
    # was taken since files under a fresh one inside the same transaction.
    result = services.held_release(held_id=held.pk, actor=staff)
    clash = services.held_create(submission=patient("clash@example.com"), why="honeypot")
    HeldSubmission.objects.filter(pk=clash.pk).update(reference=taken)
    clashed = services.held_release(held_id=clash.pk, actor=staff)
    reset = ResetRequest.objects.get(pk=result.reset.pk)
    return {
        "reference": [held.reference, reset.reference],
        "kinds": list(reset.events.order_by("created_at", "pk").values_list("kind", flat=True)),
        "family": reset.family_members.count(),
        "clashed": [taken, clashed.reset.reference, ResetRequest.objects.filter(reference=taken).count()],
        "held_left": HeldSubmission.objects.filter(pk__in=[held.pk, clash.pk]).count(),
    }


def prepared():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        return sorted(row[0].split(" ", 2)[1] for row in cursor.fetchall() if row[0].startswith("WITH "))


def marked_sent_on_the_server():
    from requests_app.outbox import send

    reset = services.reset_submit(submission=patient(f"{uuid.uuid4().hex}@example.com")).reset
    claimed = send.claim_emails(list(reset.emails.values_list("pk", flat=True)))
    for outbound in claimed.values():
        send._mark_sent(outbound, sent_at=timezone.now(), provider_message_id="")
    return {
        "states": sorted(reset.emails.values_list("state", flat=True)),
        "sent_events": sorted(reset.events.filter(kind="email_sent").values_list("message", flat=True)),
        "prepared": prepared(),
    }


def claimed_as_claimable_q_says():
    from requests_app.outbox import send

    now = timezone.now()
    stale = now - timedelta(seconds=settings.EMAIL_CLAIM_TIMEOUT_SECONDS + 1)
    fresh = now - timedelta(seconds=1)
    reset = services.reset_submit(submission=patient(f"{uuid.uuid4().hex}@example.com")).reset
    rows = {}
    for state in ("pending", "sending", "sent", "failed", "bounced"):
        for next_attempt in (None, now - timedelta(minutes=1), now + timedelta(minutes=5)):
            for claimed_at in (None, fresh, stale):
                for request in (reset, None):
                    row = OutboundEmail.objects.create(
                        reset=request, kind="acknowledgment" if request else "staff_overdue_digest",
                        to="a@example.com", state=state, attempts=2, created_at=now,
                        next_attempt_at=next_attempt, claimed_at=claimed_at,
                    )
                    rows[row.pk] = f"{state} next={next_attempt and (next_attempt > now)} claimed={claimed_at}"
    ids = list(rows)
    expected = set(OutboundEmail.objects.filter(send.claimable_q(), pk__in=ids).values_list("pk", flat=True))
    before = {row.pk: row for row in OutboundEmail.objects.select_related("reset").filter(pk__in=expected)}
    claimed, seen = statements(lambda: send.claim_emails(ids))
    after = {row.pk: row for row in OutboundEmail.objects.select_related("reset").filter(pk__in=ids)}

    def fields(row):
        values = {f.attname: str(getattr(row, f.attname)) for f in OutboundEmail._meta.concrete_fields}
        values["reset"] = None if row.reset is None else {
            f.attname: str(getattr(row.reset, f.attname)) for f in ResetRequest._meta.concrete_fields
        }
        return values

    return {
        "statements": seen,
        "expected": sorted(expected),
        "claimed": sorted(claimed),
        "kinds_of_claimed": sorted({rows[pk] for pk in claimed}),
        "in_memory_is_stored": all(fields(claimed[pk]) == fields(after[pk]) for pk in claimed),
        "stored_claims": sorted({(after[pk].state, after[pk].attempts, after[pk].claimed_at >= now) for pk in claimed}),
        "untouched": all(fields(after[pk]) == fields(row) for pk, row in after.items() if pk not in claimed)
        and all(before[pk].state != "sending" or before[pk].claimed_at < now for pk in claimed),
        "with_requests": sorted({claimed[pk].reset is not None for pk in claimed}),
        "again": sorted(send.claim_emails(ids)),
        "prepared": prepared(),
    }


def prepared_on_the_server():
    emails = [f"{uuid.uuid4().hex}@example.com" for _ in range(4)]
    made = [services.reset_submit(submission=patient(email)).created for email in emails[:3]]
    first_connection = prepared()
    services.reset_attach_quietly(submission=patient(emails[0]))
    with_attach = prepared()
    connection.close()
    again = services.reset_submit(submission=patient(emails[3]))
    return {
        "made": made + [again.created],
        "first_connection": first_connection,
        "with_attach": with_attach,
        "new_connection": prepared(),
        "stored": ResetRequest.objects.filter(email__in=emails).count(),
        "events_on_first": list(
            ResetRequest.objects.get(email=emails[0]).events.order_by("pk").values_list("kind", flat=True)
        ),
    }

print("REPORT=" + json.dumps(SCENARIO(), default=str))
"""


@pytest.fixture(scope="module")
def pg_env(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with fresh_postgres_database(postgres_server) as url:
        yield offline_production_env(
            var_dir=Path(tmp_path_factory.mktemp("submit-pg-var")), site_url="http://localhost", database_url=url
        )


def run(env: dict[str, str], scenario: str) -> Any:
    result = run_manage("shell", "-c", SCRIPT.replace("SCENARIO()", f"{scenario}()"), env=env, timeout=120)
    match = re.search(r"^REPORT=(.*)$", result.stdout, re.M)
    assert match, f"no report\n{result.stdout}\n{result.stderr}"
    return json.loads(match[1])


def test_a_new_request_is_one_statement_with_the_same_rows_as_the_orms_path(pg_env):
    report = run(pg_env, "same_rows")

    assert report["fast_statements"] == ["WITH"]
    assert report["fast"] == report["orm"]
    assert report["created"] is True
    assert report["in_memory_reference"] == report["stored_reference"]
    fast = report["fast"]
    assert [e["kind"] for e in fast["emails"]] == ["acknowledgment", "staff_new_request"]
    assert all(e["state"] == "pending" and e["due_when_made"] and e["made_at_submission"] for e in fast["emails"])
    assert [(e["kind"], e["message"]) for e in fast["events"]] == [
        ("submitted", ""),
        ("email_queued", "Acknowledgment"),
        ("email_queued", "New request (staff)"),
    ]
    assert fast["request"]["language"] == "es" and fast["request"]["status"] == "new"
    assert fast["request"]["due_as_promised"] is True
    assert fast["family"] == [["Luis", "Ruiz", "2010-03-01"], ["Eva", "Ruiz", "2012-06-02"]]
    # One publish for the two emails, the acknowledgment first (both paths);
    # then one for each second submission's acknowledgment.
    assert report["published"] == [["acknowledgment", "staff_new_request"]] * 2 + [["acknowledgment"]] * 2
    # The second submission: the new request's statement inserts nothing
    # (the patient has an open request), then one statement attaches it,
    # with the same rows as the ORM's.
    assert report["again_statements"] == ["WITH", "WITH"]
    assert report["again_created"] == [False, False]
    assert report["again"] == report["orm_again"]
    assert [(e["kind"], e["message"].splitlines()[0]) for e in report["again"]["events"][3:]] == [
        ("duplicate", "Name: Ana Ruiz"),
        ("email_queued", "Acknowledgment"),
    ]
    assert "Family member: Luis Ruiz (2010-03-01)" in report["again"]["events"][3]["message"]
    assert [e["kind"] for e in report["again"]["emails"]] == ["acknowledgment", "staff_new_request", "acknowledgment"]


def test_a_second_submission_is_attached_to_the_open_request(pg_env):
    report = run(pg_env, "second_submission")

    first, second, stored = report["references"]
    assert first == second == stored
    assert report["created"] == [True, False]
    assert report["requests"] == 1
    assert report["kinds"] == ["submitted", "email_queued", "email_queued", "duplicate", "email_queued"]
    assert report["emails"] == ["acknowledgment", "staff_new_request", "acknowledgment"]
    # The new request's statement, which inserts nothing, then the attach.
    assert report["statements"] == ["WITH", "WITH"]
    assert report["published"] == [["acknowledgment"]]


def test_past_the_email_limit_a_submission_is_one_statement_on_the_open_request_or_held(pg_env):
    report = run(pg_env, "past_email_limit")

    assert report["references"][0] == report["references"][1]
    assert report["last_event"] == ["duplicate", "(Past the per-email limit: no email was sent.)", None]
    assert report["new_emails"] == 0
    assert report["statements"] == ["WITH"]
    # No open request: the attach finds none, then one insert holds it.
    assert report["held_statements"] == ["WITH", "INSERT"]
    assert report["held"] == [["email_limit", "nobody-open@example.com"]]


def test_two_first_submissions_of_one_patient_at_the_same_moment_make_one_request(pg_env):
    report = run(pg_env, "at_the_same_moment")

    for outcome in report:
        (first_created, first_ref), (second_created, second_ref) = outcome["results"]
        assert sorted([first_created, second_created]) == [False, True], outcome
        assert first_ref == second_ref == outcome["reference"], outcome
        assert outcome["emails"] == ["acknowledgment", "acknowledgment", "staff_new_request"], outcome
        assert sorted(outcome["events"]) == ["duplicate", "email_queued", "email_queued", "email_queued", "submitted"]


def test_a_reference_already_taken_is_drawn_again(pg_env):
    report = run(pg_env, "reference_taken")

    assert report["second"] == report["stored"] == "ZZZZ-ZZZZ"
    assert report["taken"] != report["second"]


def test_a_held_submission_is_released_in_its_transaction_under_its_reference_or_a_new_one(pg_env):
    report = run(pg_env, "release_held")

    held_reference, filed_reference = report["reference"]
    assert filed_reference == held_reference
    assert report["kinds"] == ["submitted", "email_queued", "email_queued", "released"]
    assert report["family"] == 2
    taken, clashed, with_taken = report["clashed"]
    assert clashed != taken and with_taken == 1
    assert report["held_left"] == 0


def test_the_submission_s_statements_are_planned_once_per_connection(pg_env):
    # Prepared on the server (psycopg's protocol-level statements, not SQL
    # PREPARE): the new request's statement on its first run, the attach
    # statement on its own, and again on a new connection.
    report = run(pg_env, "prepared_on_the_server")

    assert report["made"] == [True, True, True, True]
    assert report["stored"] == 4
    assert report["first_connection"] == ["new"]
    assert report["with_attach"] == ["new", "open_request"]
    assert report["new_connection"] == ["new"]
    assert report["events_on_first"] == ["submitted", "email_queued", "email_queued", "duplicate"]


def test_an_email_is_marked_sent_by_a_prepared_statement(pg_env):
    report = run(pg_env, "marked_sent_on_the_server")

    assert report["states"] == ["sent", "sent"]
    assert report["sent_events"] == ["Acknowledgment", "New request (staff)"]
    assert report["prepared"] == ["new", "picked", "sent"]


def test_without_prepared_statements_the_same_rows_and_nothing_prepared(pg_env):
    # DATABASE_PREPARED_STATEMENTS=0, for a connection pooler in
    # transaction mode that cannot keep a connection's prepared statements.
    off = {**pg_env, "DATABASE_PREPARED_STATEMENTS": "0"}
    submitted = run(off, "prepared_on_the_server")
    marked = run(off, "marked_sent_on_the_server")

    assert submitted["made"] == [True, True, True, True]
    assert submitted["stored"] == 4
    assert submitted["events_on_first"] == ["submitted", "email_queued", "email_queued", "duplicate"]
    assert submitted["first_connection"] == submitted["with_attach"] == submitted["new_connection"] == []
    assert marked["states"] == ["sent", "sent"]
    assert marked["prepared"] == []


def test_a_worker_claims_in_one_statement_exactly_the_rows_claimable_q_names(pg_env):
    report = run(pg_env, "claimed_as_claimable_q_says")

    assert report["statements"] == ["WITH"]
    assert report["claimed"] == report["expected"] and report["claimed"]
    # Pending and due, or claimed by a worker gone quiet; nothing else.
    assert {kind.split(" claimed=")[0] for kind in report["kinds_of_claimed"]} == {
        "pending next=None",
        "pending next=False",
        "sending next=None",
        "sending next=False",
        "sending next=True",
    }
    assert report["in_memory_is_stored"] is True
    assert report["stored_claims"] == [["sending", 3, True]]
    assert report["untouched"] is True
    assert report["with_requests"] == [False, True]
    assert report["again"] == []
    assert report["prepared"] == ["new", "picked"]
