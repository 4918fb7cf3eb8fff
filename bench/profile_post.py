"""Where one POST's time goes: in-process, on PostgreSQL and Redis, with
cProfile (no gunicorn, no wrk).

    .venv/bin/python -m bench.profile_post                 # a valid submission
    .venv/bin/python -m bench.profile_post --kind honeypot # a held one
    .venv/bin/python -m bench.profile_post --kind all      # every kind, no profile

Starts a Redis of its own (cache and broker: publishing reaches a real
broker; no worker runs) and a fresh PostgreSQL database (BENCH_POSTGRES_URL,
dropped after), then POSTs through Django's test client with the
production settings (DEBUG off) plus the floor (bench/settings.py). Prints
for each kind the wall and CPU time per POST, the SQL statements and Redis
commands per POST, and (one kind) the profile's biggest items and a
breakdown by part. A tool for finding the next lever, not a target.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import loadgen
from .profiling import manage, process_cpu_seconds, throwaway_services, time_by_part

KINDS = ("valid", "duplicate", "honeypot", "too_fast", "email_limit", "address_limit", "floor", "get", "floor_get")

# Functions whose cumulative time is a part of the POST, by name
# (file suffix, function name); the first match of a frame wins.
PARTS: dict[str, tuple[str, str]] = {
    "service (reset_submit)": ("services/submission.py", "reset_submit"),
    "held_create": ("services/held.py", "held_create"),
    "past the email limit": ("services/held.py", "reset_submit_past_email_limit"),
    "broker publish (after commit)": ("outbox/publish.py", "publish_by_queue"),
    "rate limits": ("requests_app/rate_limits.py", "over_rate_limit"),
    "form + family validation": ("django/forms/forms.py", "full_clean"),
    "SQL execute": ("django/db/backends/utils.py", "_execute"),
    "commit": ("django/db/backends/base/base.py", "commit"),
    "template render": ("django/template/base.py", "render"),
}


# What the form page puts in the form besides the patient's answers (the
# CSRF token and the timing value apart): the family formset's management
# form, the date step's boxes, the honeypot.
PAGE_FIELDS = {
    "family-TOTAL_FORMS": "1",
    "family-INITIAL_FORMS": "0",
    "family-MIN_NUM_FORMS": "0",
    "family-MAX_NUM_FORMS": "5",
    "appointment_date_month": "",
    "appointment_date_day": "",
    "appointment_date_year": "",
    "website": "",
}


def patient(email: str) -> dict[str, str]:
    """The load's patient (loadgen.patient) with the page's other fields."""
    return {**PAGE_FIELDS, **loadgen.patient(email)}


class RedisCounter:
    """Commands the Redis server answered, from INFO commandstats."""

    def __init__(self, port: int):
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=port)
        self.pid = int(self.client.info("server")["process_id"])

    def total(self) -> int:
        stats = self.client.info("commandstats")
        # Our own INFO calls are not the POST's.
        return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="valid", choices=[*KINDS, "all"])
    parser.add_argument("--posts", type=int, default=300, help="POSTs measured (after as many to warm up)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", action="store_true", help="one JSON line of figures, no profile")
    parser.add_argument("--cpu", action="store_true", help="profile this process's CPU time, not wall time")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="portal-reset-profile-"))
    try:
        with throwaway_services(
            root,
            SUBMIT_MIN_SECONDS="3",
            SUBMIT_RATE_PER_EMAIL="5/h",
            SUBMIT_RATE_PER_ADDRESS="20/h",
            CLIENT_IP_HEADER="X-Real-IP",
        ) as (env, redis_port):
            manage(env, "collectstatic")
            os.environ.update(env)
            run(args, RedisCounter(redis_port))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, redis_counter: RedisCounter) -> None:
    import django

    django.setup()
    from django.core import signing
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection
    from django.utils import timezone

    from requests_app import form_timing

    handler = WSGIHandler()
    counter = iter(range(10**9))
    # A CSRF secret as the cookie and, unmasked, as the form's token: what
    # Django accepts from a browser that loaded the form.
    csrf = "b" * 32
    site = os.environ["SITE_URL"]

    class Response:
        def __init__(self, status: str):
            self.status_code = int(status.split()[0])

    def request(method: str, path: str, data: dict[str, str] | None = None, **meta: str) -> Response:
        from urllib.parse import urlencode

        body = urlencode({**(data or {}), "csrfmiddlewaretoken": csrf}).encode() if method == "POST" else b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1:8000",
            "REMOTE_ADDR": "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_COOKIE": f"csrftoken={csrf}",
            "HTTP_ORIGIN": site,
            "HTTP_REFERER": site + path,
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            **meta,
        }
        statuses: list[str] = []
        chunks = handler(environ, lambda status, headers, exc_info=None: statuses.append(status))
        for _ in chunks:
            pass
        getattr(chunks, "close", lambda: None)()
        return Response(statuses[0])

    def timing(seconds_ago: float) -> str:
        return signing.dumps(timezone.now().timestamp() - seconds_ago, salt=form_timing._SALT, compress=False)

    old, fresh = timing(60), timing(-3600)

    def post(path: str, data: dict[str, str], ip: str | None = None) -> Callable[[], Any]:
        n = next(counter)
        headers = {"HTTP_X_REAL_IP": ip or f"2001:db8:{n // 65536:x}:{n % 65536:x}::1"}
        return lambda: request("POST", path, data, **headers)

    def make(kind: str) -> Callable[[], Any]:
        n = next(counter)
        if kind == "valid":
            return post("/reset/", {**patient(f"p{n}@example.com"), "form_started": old})
        if kind == "duplicate":
            return post("/reset/", {**patient("same@example.com"), "form_started": old})
        if kind == "honeypot":
            return post("/reset/", {**patient(f"p{n}@example.com"), "form_started": old, "website": "x"})
        if kind == "too_fast":
            return post("/reset/", {**patient(f"p{n}@example.com"), "form_started": fresh})
        if kind == "email_limit":
            return post("/reset/", {**patient("limited@example.com"), "form_started": old})
        if kind == "address_limit":
            return post("/reset/", {**patient(f"p{n}@example.com"), "form_started": old}, ip="203.0.113.9")
        if kind == "floor":
            return post("/floor/", patient(f"p{n}@example.com"))
        if kind == "get":
            return lambda: request("GET", "/reset/")
        if kind == "floor_get":
            return lambda: request("GET", "/floor/")
        raise AssertionError(kind)

    expected = {"get": 200, "floor_get": 200, "address_limit": 429}
    kinds = KINDS if args.kind == "all" else (args.kind,)
    results = {}
    from django.conf import settings

    for kind in kinds:
        # A patient's repeated submissions within the per-email limit.
        settings.SUBMIT_RATE_PER_EMAIL = "100000/h" if kind == "duplicate" else "5/h"
        calls = [make(kind) for _ in range(2 * args.posts)]
        for call in calls[: args.posts]:  # warm (and past the limits, for the limited kinds)
            call()
        measured = calls[args.posts :]
        statements: list[str] = []

        def count(execute: Any, sql: str, params: Any, many: bool, context: Any, seen: list[str] = statements) -> Any:
            seen.append(sql)
            return execute(sql, params, many, context)

        redis_before = redis_counter.total()
        with connection.execute_wrapper(count):
            response = measured[0]()
        redis_one = redis_counter.total() - redis_before
        status = response.status_code
        want = expected.get(kind, 303)
        if status != want:
            raise SystemExit(f"{kind}: answered {status}, not {want}")
        timer = time.process_time if args.cpu else time.perf_counter
        profile = cProfile.Profile(timer) if not args.json and len(kinds) == 1 else None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            postgres_pid = int(cursor.fetchone()[0])
        postgres_cpu0, redis_cpu0 = process_cpu_seconds(postgres_pid), process_cpu_seconds(redis_counter.pid)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if profile is not None:
            profile.enable()
        for call in measured[1:]:
            call()
        if profile is not None:
            profile.disable()
        n = len(measured) - 1
        results[kind] = {
            "wall_ms": round((time.perf_counter() - wall0) / n * 1000, 3),
            "cpu_ms": round((time.process_time() - cpu0) / n * 1000, 3),
            "postgres_cpu_ms": round((process_cpu_seconds(postgres_pid) - postgres_cpu0) / n * 1000, 3),
            "redis_cpu_ms": round((process_cpu_seconds(redis_counter.pid) - redis_cpu0) / n * 1000, 3),
            "sql": len(statements),
            "redis_commands": redis_one,
            "statements": [sql[:110] for sql in statements],
        }
        if profile is not None:
            report(profile, n, args.top)
    if args.json:
        print(json.dumps({k: {key: v[key] for key in v if key != "statements"} for k, v in results.items()}))
        return
    for kind, figures in results.items():
        print(
            f"{kind:14} {figures['wall_ms']:7.2f} ms wall {figures['cpu_ms']:7.2f} ms CPU "
            f"(PostgreSQL {figures['postgres_cpu_ms']:.2f}, Redis {figures['redis_cpu_ms']:.2f}) "
            f"{figures['sql']} SQL {figures['redis_commands']} Redis"
        )
        for statement in figures["statements"]:
            print(f"    {statement}")


def report(profile: cProfile.Profile, n: int, top: int) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"profile: {total / n * 1000:.2f} ms per POST under cProfile")
    for part, seconds in sorted(time_by_part(stats, PARTS).items(), key=lambda kv: -kv[1]):
        print(f"  {part:32} {seconds / n * 1000:6.2f} ms  {seconds / total:5.1%}")
    stats.sort_stats("cumulative").print_stats(top)
    print("\n".join(line for line in stream.getvalue().splitlines() if line.strip())[:20000])


if __name__ == "__main__":
    main()
