"""The parts of the benchmark that run inside Django, each in its own
process with the stack's environment (bench/run.py starts them):

    python -m bench.jobs superuser --username U --password P
    python -m bench.jobs queue-emails --count 1000
    python -m bench.jobs seed-fast --total 1000000
    python -m bench.jobs query-counts --spec '{"name": "/path", ...}' [--login U]
    python -m bench.jobs timing-values

Each prints one JSON object on its last line of output.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from requests_app.management.commands.seed_demo import FIRST, LAST, STATUS_WEIGHTS  # noqa: E402
from requests_app.models import OutboundEmail, ResetRequest  # noqa: E402
from requests_app.outbox.queue import email_queue_many  # noqa: E402
from requests_app.references import REFERENCE_ALPHABET  # noqa: E402


def superuser(args: argparse.Namespace) -> dict[str, Any]:
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=args.username, defaults={"email": "bench@practice.example"})
    user.is_staff = user.is_superuser = True
    user.first_name, user.last_name = "Bench", "Staff"
    user.set_password(args.password)
    user.save()
    return {"id": user.pk}


def queue_emails(args: argparse.Namespace) -> dict[str, Any]:
    """N acknowledgments put in the outbox in one transaction, the way the
    services queue emails: rows first, then their ids to Celery (in batches
    of EMAIL_BATCH_SIZE) once the transaction commits."""
    missing = args.count - ResetRequest.objects.count()
    if missing > 0:
        call_command("seed_demo", requests=missing, stdout=io.StringIO())
    requests = list(ResetRequest.objects.order_by("-pk")[: args.count])
    marks: dict[str, float] = {}
    with transaction.atomic():
        # Registered first, so it runs first: the moment of the commit.
        transaction.on_commit(lambda: marks.setdefault("committed", time.monotonic()))
        rows = email_queue_many(
            messages=[(request, OutboundEmail.Kind.ACKNOWLEDGMENT, request.email) for request in requests]
        )
    marks["published"] = time.monotonic()
    return {"ids": [row.pk for row in rows], "committed": marks["committed"], "published": marks["published"]}


def _index_statements(table: str) -> tuple[list[str], list[str]]:
    """(drop, create) statements for every index of ``table`` except the
    primary key and the unique reference (kept, so that the insert can skip
    a colliding reference)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.relname, pg_get_indexdef(i.oid), c.conname, pg_get_constraintdef(c.oid)
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            LEFT JOIN pg_constraint c ON c.conindid = i.oid AND c.conrelid = x.indrelid
            WHERE x.indrelid = %s::regclass AND NOT x.indisprimary
            ORDER BY i.relname
            """,
            [table],
        )
        rows = cursor.fetchall()
    drops, creates = [], []
    for index, index_def, constraint, constraint_def in rows:
        if constraint is not None:
            if constraint_def.replace('"', "") == "UNIQUE (reference)":
                continue
            drops.append(f'ALTER TABLE "{table}" DROP CONSTRAINT "{constraint}"')
            creates.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{constraint}" {constraint_def}')
        else:
            drops.append(f'DROP INDEX "{index}"')
            creates.append(index_def)
    return drops, creates


_COLUMNS = (
    "reference, status_secret, status, is_open, reason, first_name, last_name, date_of_birth, email, phone, "
    "appointment_date, details, submitted_at, due_at, waiting_since, ended_at, updated_at, assignee_id, "
    "identity_dob_matched, identity_phone_matched, identity_email_matched, identity_verified_at, "
    "identity_verified_by_id, outcome, close_reason"
)

# One row per request, with seed_demo's distribution (its names and status
# weights): open requests are recent (1-96 h), ended ones spread over two
# years; resolved ones have an identity check and an outcome.
_INSERT_REQUESTS = """
WITH picks AS (
    SELECT g,
           random() AS rs,
           (%(base)s::bigint + g) * 1000003 %% 500246412961 AS code,
           random() AS age_r
    FROM generate_series(1, %(count)s) AS g
), shaped AS (
    SELECT g, code,
           CASE WHEN rs < %(t_new)s THEN 'new' WHEN rs < %(t_progress)s THEN 'in_progress'
                WHEN rs < %(t_waiting)s THEN 'waiting' WHEN rs < %(t_resolved)s THEN 'resolved'
                ELSE 'closed' END AS status,
           %(now)s::timestamptz - make_interval(secs => 3600 * CASE WHEN rs < %(t_waiting)s
               THEN 1 + 95 * age_r ELSE 96 + 16904 * age_r END) AS submitted
    FROM picks
)
INSERT INTO requests_app_resetrequest ({columns}{extra_columns}
)
SELECT
    substr(%(alphabet)s, (code %% 29)::int + 1, 1) || substr(%(alphabet)s, (code / 29 %% 29)::int + 1, 1)
      || substr(%(alphabet)s, (code / 841 %% 29)::int + 1, 1) || substr(%(alphabet)s, (code / 24389 %% 29)::int + 1, 1)
      || '-' || substr(%(alphabet)s, (code / 707281 %% 29)::int + 1, 1)
      || substr(%(alphabet)s, (code / 20511149 %% 29)::int + 1, 1)
      || substr(%(alphabet)s, (code / 594823321 %% 29)::int + 1, 1)
      || substr(%(alphabet)s, (code / 17249876309 %% 29)::int + 1, 1),
    md5(random()::text),
    status,
    status IN ('new', 'in_progress', 'waiting'),
    (%(reasons)s::text[])[1 + floor(random() * 5)::int],
    (%(first)s::text[])[1 + floor(random() * %(n_first)s)::int],
    (%(last)s::text[])[1 + floor(random() * %(n_last)s)::int],
    date '1940-01-01' + floor(random() * 30000)::int,
    'demo.patient' || (%(base)s::bigint + g) || '.' || floor(random() * 1e9)::bigint || '@example.com',
    '+1555' || lpad(floor(random() * 1e7)::bigint::text, 7, '0'),
    (submitted - make_interval(days => 2 + floor(random() * 9)::int))::date,
    '',
    submitted,
    submitted + make_interval(hours => %(sla_hours)s),
    CASE WHEN status = 'waiting' THEN submitted + interval '1 hour' END,
    CASE WHEN status IN ('resolved', 'closed') THEN submitted + make_interval(secs => 3600 + random() * 255600) END,
    %(now)s::timestamptz,
    CASE WHEN status <> 'new' THEN %(staff)s::integer END,
    status = 'resolved', status = 'resolved', false,
    CASE WHEN status = 'resolved' THEN submitted + interval '1 hour' END,
    CASE WHEN status = 'resolved' THEN %(staff)s::integer END,
    CASE WHEN status = 'resolved' THEN (%(outcomes)s::text[])[1 + floor(random() * 4)::int] ELSE '' END,
    CASE WHEN status = 'closed' THEN (%(close_reasons)s::text[])[1 + floor(random() * 5)::int] ELSE '' END
    {extra_values}
FROM shaped
-- In submission order, as a real table fills up: the planner's estimates
-- depend on where the rows lie.
ORDER BY submitted
ON CONFLICT (reference) DO NOTHING
"""

_SEEDED_COLUMNS = {name.strip() for name in _COLUMNS.split(",")}


def _insert_requests_sql() -> tuple[str, dict[str, Any]]:
    """The INSERT above, plus each column it does not name (one added since)
    set to its field's default, so that a new field does not break the seed."""
    columns, values, params = [], [], {}
    for field in ResetRequest._meta.concrete_fields:
        if field.column in _SEEDED_COLUMNS or field.primary_key:
            continue
        if not field.has_default() and not field.null:
            raise SystemExit(f"seed-fast does not know what to put in {field.column}; add it to bench/jobs.py")
        key = f"extra_{len(columns)}"
        columns.append(f'"{field.column}"')
        values.append(f"%({key})s")
        params[key] = field.get_db_prep_save(field.get_default(), connection) if field.has_default() else None
    extra_columns = "".join(f", {c}" for c in columns)
    extra_values = "".join(f", {v}" for v in values)
    sql = _INSERT_REQUESTS.format(columns=_COLUMNS, extra_columns=extra_columns, extra_values=extra_values)
    return sql, params


_INSERT_EVENTS = """
INSERT INTO requests_app_requestevent (reset_id, kind, from_status, to_status, message, created_at)
SELECT id, 'submitted', '', 'new', '', submitted_at FROM requests_app_resetrequest WHERE id > %s
"""


def seed_fast(args: argparse.Namespace) -> dict[str, Any]:
    """Fill requests_app_resetrequest up to ``--total`` rows with seed_demo's
    kind of data, in SQL: seed_demo's bulk_create pays for ~20 index updates
    per row and would take a quarter of an hour for a million. Here the
    secondary indexes are dropped, the rows generated with generate_series,
    and the indexes built again from their own definitions (the schema ends
    exactly as the migrations left it), then VACUUM ANALYZE."""
    if connection.vendor != "postgresql":
        raise SystemExit("seed-fast is for PostgreSQL")
    started = time.monotonic()
    timings: dict[str, float] = {}
    staff = get_user_model().objects.filter(is_staff=True).order_by("pk").values_list("pk", flat=True).first()
    weights = list(STATUS_WEIGHTS.values())
    total_weight = sum(weights)
    thresholds = [sum(weights[: i + 1]) / total_weight for i in range(len(weights))]
    tables = ["requests_app_resetrequest", "requests_app_requestevent"]
    # One transaction: a failure half-way leaves the indexes as they were.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        # Foreign keys checked row by row as the rows go in: a deferred check
        # still pending would forbid building the indexes in this transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SELECT count(*), coalesce(max(id), 0) FROM requests_app_resetrequest")
        before, max_id = cursor.fetchone()
        statements = {table: _index_statements(table) for table in tables}
        mark = time.monotonic()
        for drops, _ in statements.values():
            for sql in drops:
                cursor.execute(sql)
        insert_sql, extra_params = _insert_requests_sql()
        base = 10_000_000
        attempt = 0
        while True:
            cursor.execute("SELECT count(*) FROM requests_app_resetrequest")
            missing = args.total - cursor.fetchone()[0]
            if missing <= 0 or attempt >= 5:
                break
            cursor.execute(
                insert_sql,
                {
                    **extra_params,
                    "count": missing,
                    "base": base,
                    "now": timezone.now(),
                    "alphabet": REFERENCE_ALPHABET,
                    "t_new": thresholds[0],
                    "t_progress": thresholds[1],
                    "t_waiting": thresholds[2],
                    "t_resolved": thresholds[3],
                    "reasons": list(ResetRequest.Reason.values),
                    "first": FIRST,
                    "last": LAST,
                    "n_first": len(FIRST),
                    "n_last": len(LAST),
                    "sla_hours": settings.RESET_SLA_HOURS,
                    "staff": staff,
                    "outcomes": list(ResetRequest.Outcome.values),
                    "close_reasons": list(ResetRequest.CloseReason.values),
                },
            )
            base += missing
            attempt += 1
        cursor.execute(_INSERT_EVENTS, [max_id])
        timings["insert_s"] = time.monotonic() - mark
        mark = time.monotonic()
        for _, creates in statements.values():
            for sql in creates:
                cursor.execute(sql)
        timings["indexes_s"] = time.monotonic() - mark
    mark = time.monotonic()
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'VACUUM ANALYZE "{table}"')
        cursor.execute("SELECT count(*) FROM requests_app_resetrequest")
        after = cursor.fetchone()[0]
    timings["vacuum_analyze_s"] = time.monotonic() - mark
    return {
        "before": before,
        "after": after,
        "seconds": round(time.monotonic() - started, 1),
        **{k: round(v, 1) for k, v in timings.items()},
        "indexes_rebuilt": sum(len(c) for _, c in statements.values()),
    }


def query_counts(args: argparse.Namespace) -> dict[str, Any]:
    """Django's own count of the queries each page runs, in-process with the
    test client against the same database (CaptureQueriesContext)."""
    client = Client(HTTP_HOST="127.0.0.1")
    if args.login:
        client.force_login(get_user_model().objects.get(username=args.login))
    spec: dict[str, Any] = json.loads(args.spec)
    results = {}
    for name, target in spec.items():
        method, path, data = target if isinstance(target, list) else ["GET", target, None]
        if method == "GET":
            client.get(path)  # warm: the first load fills per-process caches (templates, content types)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path) if method == "GET" else client.post(path, data or {})
        results[name] = {"status": response.status_code, "queries": len(queries)}
        if args.explain:
            # The plans of the list's own queries (the count and the page).
            plans = []
            for query in queries.captured_queries:
                if "requests_app_resetrequest" in query["sql"] and query["sql"].startswith("SELECT"):
                    with connection.cursor() as cursor:
                        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
                        plans.append(query["sql"] + "\n" + "\n".join(row[0] for row in cursor.fetchall()))
            results[name]["plans"] = plans
    return results


def timing_values(args: argparse.Namespace) -> dict[str, Any]:
    """The reset form's signed timing value (requests_app/form_timing.py) as
    the form page would have served it: a minute ago (a person who took a
    minute to fill the form in), and an hour from now (sent back at once:
    too fast for SUBMIT_MIN_SECONDS however long the run lasts)."""
    from django.core import signing

    from requests_app import form_timing

    now = timezone.now().timestamp()

    def value(at: float) -> str:
        return signing.dumps(at, salt=form_timing._SALT, compress=False)

    return {"field": form_timing.FIELD_NAME, "ok": value(now - 60), "too_fast": value(now + 3600)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("superuser")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p = sub.add_parser("queue-emails")
    p.add_argument("--count", type=int, default=1000)
    p = sub.add_parser("seed-fast")
    p.add_argument("--total", type=int, default=1_000_000)
    p = sub.add_parser("query-counts")
    p.add_argument("--spec", required=True, help='JSON: {"name": "/path/" or ["POST", "/path/", {data}]}')
    p.add_argument("--login", default="")
    p.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the list's queries")
    sub.add_parser("timing-values")
    args = parser.parse_args()
    handler = {
        "timing-values": timing_values,
        "superuser": superuser,
        "queue-emails": queue_emails,
        "seed-fast": seed_fast,
        "query-counts": query_counts,
    }[args.command]
    print(json.dumps(handler(args)), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
