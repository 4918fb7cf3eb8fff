"""Where one outbox batch's time goes: in-process, over SMTP to the bench's
sink and on PostgreSQL, with cProfile (no Celery worker).

    .venv/bin/python -m bench.profile_email                 # figures and a profile
    .venv/bin/python -m bench.profile_email --json          # one JSON line, no profile
    .venv/bin/python -m bench.profile_email --emails 2000 --top 40

Starts a Redis of its own (the broker: queueing publishes the ids there; no
worker takes them), a fresh PostgreSQL database (BENCH_POSTGRES_URL,
dropped after) and the benchmark's SMTP sink (bench/smtp_sink.py) as a
subprocess, then, with the production settings (DEBUG off) as the worker
has them, has N acknowledgments queued in one transaction as `make bench`
does (bench/jobs.py queue-emails, a process of its own: only the sending is
this process's work) and sends them with email_send_many in batches
of EMAIL_BATCH_SIZE, the way the task does, after a first batch to warm up.
Prints the wall and CPU time per email (this process; beside it the sink's
and this process's PostgreSQL backend's CPU, from /proc), the SQL statements per email, and a breakdown by part. A tool
for finding the next lever, not a target: the worker's figure is `make
bench`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.polling import free_port, wait_for

from .profiling import process_cpu_seconds, throwaway_services, time_by_part
from .stack import REPO

# Functions whose cumulative time is a part of the send, by name (file
# suffix, function name); a part counts its function's outermost calls.
PARTS: dict[str, tuple[str, str]] = {
    "claim (claim_emails)": ("outbox/send.py", "claim_emails"),
    "send_claimed (everything per email)": ("outbox/send.py", "send_claimed"),
    "  build_message": ("outbox/render.py", "build_message"),
    "    context (email_context)": ("outbox/render.py", "email_context"),
    "    render (3 templates)": ("outbox/render.py", "render"),
    "      template render": ("django/template/base.py", "render"),
    "  message.send (backend)": ("django/core/mail/message.py", "send"),
    "    sanitize_address": ("django/core/mail/message.py", "sanitize_address"),
    "    MIME build (message())": ("django/core/mail/message.py", "message"),
    "    lean writer (message_bytes)": ("outbox/render.py", "message_bytes"),
    "    MIME write (as_bytes)": ("django/core/mail/message.py", "as_bytes"),
    "    smtplib sendmail": ("smtplib.py", "sendmail"),
    "  mark sent (_mark_sent)": ("outbox/send.py", "_mark_sent"),
    "SQL execute": ("django/db/backends/utils.py", "_execute"),
    "logging": ("logging/__init__.py", "_log"),
}


@contextlib.contextmanager
def services(root: Path) -> Iterator[tuple[dict[str, str], subprocess.Popen[str], Path]]:
    """throwaway_services with the benchmark's SMTP sink as a subprocess."""
    smtp_port = free_port()
    sink_log = root / "smtp.log"
    sink = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.smtp_sink", "--port", str(smtp_port), "--out", str(sink_log)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sink.stdout is not None
        if "ready" not in sink.stdout.readline():
            raise SystemExit("the SMTP sink did not start")
        with throwaway_services(root, smtp_port=smtp_port) as (env, _redis_port):
            yield env, sink, sink_log
    finally:
        sink.terminate()
        sink.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=1000, help="acknowledgments measured (after one batch to warm)")
    parser.add_argument(
        "--batch", type=int, default=0, help="emails per call (default EMAIL_BATCH_SIZE; 2 is a submission's task)"
    )
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cpu", action="store_true", help="profile this process's CPU time, not wall time")
    parser.add_argument("--json", action="store_true", help="one JSON line of figures, no profile")
    parser.add_argument("--no-profile", action="store_true", help="figures only, without cProfile's overhead")
    parser.add_argument(
        "--keep-connection",
        action="store_true",
        help="keep the SMTP connection between batches, as a worker process does (outbox/kept_connection.py)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="portal-reset-profile-email-"))
    try:
        with services(root) as (env, sink, sink_log):
            os.environ.update(env)
            run(args, sink.pid, sink_log)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, sink_pid: int, sink_log: Path) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from requests_app.models import OutboundEmail
    from requests_app.outbox.send import email_send_many

    if args.keep_connection:
        from requests_app.outbox.kept_connection import keeping_enable

        keeping_enable()
    batch = args.batch or settings.EMAIL_BATCH_SIZE
    total = args.emails + batch
    # Seeded and queued by a process of its own, as `make bench` does: what
    # this process does (and bench.instructions counts) is the sending alone.
    queued = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.jobs", "queue-emails", "--count", str(total)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    ids = sorted(json.loads(queued.stdout.splitlines()[-1])["ids"])
    batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]

    def send(email_ids: list[int]) -> None:
        results = email_send_many(email_ids=email_ids)
        unsent = [pk for pk, result in results.items() if result.state != OutboundEmail.State.SENT]
        if unsent:
            raise SystemExit(f"{len(unsent)} emails not sent: {sorted({results[pk].state for pk in unsent})}")

    send(batches[0])  # warm: templates, translations, the connection
    measured = batches[1:]
    n = sum(len(b) for b in measured)
    statements: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        postgres_pid = int(cursor.fetchone()[0])
    timer = time.process_time if args.cpu else time.perf_counter
    profile = cProfile.Profile(timer) if not (args.json or args.no_profile) else None
    sink_cpu0, postgres_cpu0 = process_cpu_seconds(sink_pid), process_cpu_seconds(postgres_pid)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(count):
        if profile is not None:
            profile.enable()
        for email_ids in measured:
            send(email_ids)
        if profile is not None:
            profile.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    wait_for(lambda: len(sink_log.read_text().splitlines()) >= total, timeout=30, what="every email at the sink")
    sink_cpu = process_cpu_seconds(sink_pid) - sink_cpu0
    postgres_cpu = process_cpu_seconds(postgres_pid) - postgres_cpu0
    figures = {
        "emails": n,
        "profiled": profile is not None,
        "wall_ms": round(wall / n * 1000, 3),
        "cpu_ms": round(cpu / n * 1000, 3),
        "sink_cpu_ms": round(sink_cpu / n * 1000, 3),
        "postgres_cpu_ms": round(postgres_cpu / n * 1000, 3),
        "per_second": round(n / wall, 1),
        "sql_per_email": round(len(statements) / n, 2),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"{n} emails in batches of {batch}{' (under cProfile)' if profile else ''}: "
        f"{figures['wall_ms']:.3f} ms wall, {figures['cpu_ms']:.3f} ms CPU per email "
        f"({figures['per_second']}/s); the sink {figures['sink_cpu_ms']:.3f} ms and this process's PostgreSQL "
        f"backend {figures['postgres_cpu_ms']:.3f} ms CPU per email; "
        f"{figures['sql_per_email']} SQL per email"
    )
    seen: dict[str, int] = {}
    for sql in statements:
        seen[sql[:110]] = seen.get(sql[:110], 0) + 1
    for sql, times in sorted(seen.items(), key=lambda kv: -kv[1]):
        print(f"  {times / n:6.2f} x {sql}")
    if profile is not None:
        report(profile, n, args.top)


def report(profile: cProfile.Profile, n: int, top: int) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"profile: {total / n * 1000:.2f} ms per email under cProfile (the sum of every function's own time)")
    cumulative = time_by_part(stats, PARTS)
    for part in PARTS:
        if part in cumulative:
            seconds = cumulative[part]
            print(f"  {part:30} {seconds / n * 1000:6.3f} ms  {seconds / total:5.1%}")
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    print("\n".join(line for line in stream.getvalue().splitlines() if line.strip())[:30000])


if __name__ == "__main__":
    main()
