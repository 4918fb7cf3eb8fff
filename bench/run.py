"""`make bench`: the performance targets, each against a floor measured in
the same run, on the production processes.

    .venv/bin/python -m bench.run            # the full run (~10 minutes)
    .venv/bin/python -m bench.run --quick    # a short smoke run of every phase

Starts a fresh PostgreSQL database (BENCH_POSTGRES_URL, default the local
server), a Redis of its own, an SMTP sink, gunicorn (gunicorn.conf.py, 2 sync
workers, DEBUG off) and one Celery worker, then measures:

1. submit: valid POSTs to /reset/ (a different patient each) with wrk, every
   response checked to be 303 and the rows counted; the floor's POSTs
   (bench/floor/: a plain form, one insert) the same way; GET of both forms;
2. acknowledgment latency at a steady rate: POST response → the message at
   the SMTP server, matched by reference;
3. email throughput: N outbox rows queued at once through the worker, against
   a plain smtplib loop to the same server;
4. the staff list on 1,000,000 requests: p50/p95 of 50 loads per variant
   over HTTP as a logged-in superuser, and each page's query count
   (CaptureQueriesContext, in-process, same database) at a small and the
   full size;
5. peak RSS (VmHWM) of the web workers and of the Celery worker throughout.

Writes every figure, round by round, to var/bench/<run>/results-full.json,
the headline figures of a full run (each target, what it measured and its
ratio) to bench/results.json, and prints a table. Nothing here is part of
`make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import smtplib
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.support.http_client import Browser
from tests.support.polling import wait_for

from .loadgen import UNIQUE, FormSession, patient, run_wrk, steady_posts, summarize_ms, wrk_path
from .memory import PeakMemory
from .report import check_targets, headline, markdown_table
from .stack import REPO, BenchStack, postgres_admin_url

RESULTS = Path(__file__).with_name("results.json")
ADMIN_LIST = "/admin/requests_app/resetrequest/"
BENCH_USER, BENCH_PASSWORD = "bench-admin", "bench-admin-password-1"
# The probe submission's last name: the "rare last name" search finds it.
RARE_LAST_NAME = "Wojciechowska"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- Machine -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(kb / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    versions = {"python": platform.python_version()}
    for package in ("django", "gunicorn", "celery", "psycopg"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "versions": versions,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- 1. Submit throughput and the floor ---------------------------------------------


def _rows(stack: BenchStack, table: str) -> int:
    return int(stack.scalar(f'SELECT count(*) FROM "{table}"'))  # noqa: S608 - our own table names


def _post_run(
    stack: BenchStack, session: FormSession, body: str, table: str, args: argparse.Namespace, seconds: float
) -> dict[str, Any]:
    before = _rows(stack, table)
    summary = run_wrk(
        session, mode="post", body=body, seconds=seconds, connections=args.connections, threads=args.wrk_threads
    )
    # Requests wrk sent but stopped waiting for may still land: wait for them.
    time.sleep(1.0)
    after = _rows(stack, table)
    statuses = summary["statuses"]
    ok = statuses.get("303", 0)
    summary["rows_created"] = after - before
    summary["all_303"] = set(statuses) <= {"303"} and not any(summary["errors"].values())
    # Every 303 created a row; at most one request in flight per connection
    # was cut off by wrk's stop after the server took it.
    summary["valid"] = summary["all_303"] and ok <= after - before <= ok + args.connections
    return summary


def measure_throughput(stack: BenchStack, args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    ours = FormSession.open(stack.site_url, "/reset/")
    floor = FormSession.open(stack.site_url, "/floor/")
    invocations = iter(range(1, 1000))

    def ours_body() -> str:
        """A new set of patients for each wrk run (load.lua's counter starts
        again at 1 each time): a patient seen before would be attached to
        their open request, not stored as a new one."""
        return ours.body(patient(f"bench-{run_id}-{next(invocations)}-{UNIQUE}@example.com"))

    def floor_body() -> str:
        return floor.body(patient(f"floor-{run_id}-{next(invocations)}-{UNIQUE}@example.com"))

    # One by hand first: a form that does not validate would make every
    # figure below meaningless.
    for name, session, data in (
        ("/reset/", ours, patient(f"probe-{run_id}@example.com", last_name=RARE_LAST_NAME)),
        ("/floor/", floor, patient(f"probe-{run_id}@example.com")),
    ):
        status, _ = session.post(session.body(data))
        if status != 303:
            raise SystemExit(f"the probe POST to {name} answered {status}, not 303: the form does not validate")
    log("warming up (2 s each)")
    for session, mode, body in (
        (floor, "get", ""),
        (ours, "get", ""),
        (floor, "post", floor_body()),
        (ours, "post", ours_body()),
    ):
        run_wrk(session, mode=mode, body=body, seconds=2, connections=args.connections, threads=args.wrk_threads)
    stack.settle()
    rounds: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        result: dict[str, Any] = {"load_average": load_average()}
        for key, session in (("floor_get", floor), ("ours_get", ours)):
            result[key] = run_wrk(
                session, mode="get", seconds=args.seconds, connections=args.connections, threads=args.wrk_threads
            )
            result[key]["valid"] = set(result[key]["statuses"]) <= {"200"}
        result["floor_post"] = _post_run(stack, floor, floor_body(), "bench_floor_floorrequest", args, args.seconds)
        result["ours_post"] = _post_run(stack, ours, ours_body(), "requests_app_resetrequest", args, args.seconds)
        stack.settle()
        # The same with the Celery worker stopped (SIGSTOP): what the web
        # tier alone costs, the emails' work left for after the run.
        with stack.worker_paused():
            result["ours_post_web_only"] = _post_run(
                stack, ours, ours_body(), "requests_app_resetrequest", args, args.seconds
            )
        result["drain_seconds"] = round(stack.settle(), 1)
        rounds.append(result)
        log(
            f"round {number}: GET floor {result['floor_get']['rps']}/s ours {result['ours_get']['rps']}/s; "
            f"POST floor {result['floor_post']['rps']}/s ours {result['ours_post']['rps']}/s "
            f"(rows {result['ours_post']['rows_created']}, valid {result['ours_post']['valid']}), "
            f"web only {result['ours_post_web_only']['rps']}/s; "
            f"outbox drained in {result['drain_seconds']} s"
        )

    keys = ("floor_get", "ours_get", "floor_post", "ours_post", "ours_post_web_only")

    def median_run(key: str) -> dict[str, Any]:
        """The round whose req/s is the median for this page."""
        ordered = sorted((r[key] for r in rounds), key=lambda run: run["rps"])
        return ordered[(len(ordered) - 1) // 2]

    def ratio(ours_key: str, floor_key: str) -> float:
        # Each round's two runs are back to back, so a load that comes and
        # goes on the machine weighs on both alike; the median round's ratio.
        ratios = sorted(r[ours_key]["rps"] / r[floor_key]["rps"] for r in rounds)
        return round(statistics.median(ratios), 3)

    summary = {key: median_run(key) for key in keys}
    valid = all(r[k]["valid"] for r in rounds for k in keys)
    return {
        "method": f"wrk -t{args.wrk_threads} -c{args.connections}, {args.seconds:g} s per run, "
        f"{args.rounds} rounds; ratios are the median of each round's ratio, figures the median round's",
        "rounds": rounds,
        "median": summary,
        "post_ratio": ratio("ours_post", "floor_post"),
        "post_ratio_web_only": ratio("ours_post_web_only", "floor_post"),
        "get_ratio": ratio("ours_get", "floor_get"),
        "valid": valid,
    }


# --- 2. Acknowledgment latency ---------------------------------------------------------


def read_sink(stack: BenchStack) -> list[tuple[float, str, str, str]]:
    """(time, Message-ID, reference, recipients) of every message received."""
    rows = []
    if stack.sink_log.exists():
        for line in stack.sink_log.read_text().splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4:
                rows.append((float(parts[0]), parts[1], parts[2], parts[3]))
    return rows


def measure_ack_latency(stack: BenchStack, args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    session = FormSession.open(stack.site_url, "/reset/")
    count = int(args.ack_rate * args.ack_seconds)
    tag = f"ack-{run_id}-"
    bodies = [session.body(patient(f"{tag}{i}@example.com")) for i in range(count)]
    log(f"acknowledgment latency: {count} POSTs at {args.ack_rate:g}/s")
    sent = steady_posts(session, bodies, rate=args.ack_rate)
    references: dict[str, float] = {}
    bad = [s for s in sent if s.status != 303]
    for s in sent:
        match = re.search(r"/reset/submitted/([^/]+)/", s.location)
        if s.status == 303 and match:
            references[match.group(1)] = s.responded

    def acks() -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for received, _, reference, rcpts in read_sink(stack):
            if rcpts.startswith(tag) and reference in references:
                found.setdefault(reference, []).append(received)
        return found

    with contextlib.suppress(AssertionError):  # reported as missing below
        wait_for(lambda: len(acks()) >= len(references), timeout=args.ack_wait, what="every acknowledgment")
    # A duplicate would come later than the first copy: give it a moment.
    time.sleep(2)
    found = acks()
    latencies = [min(times) - references[ref] for ref, times in found.items()]
    staff_notices = sum(
        1 for _, _, reference, rcpts in read_sink(stack) if reference in references and not rcpts.startswith(tag)
    )
    lag = [s.started - s.scheduled for s in sent]
    response_times = [s.responded - s.started for s in sent]
    return {
        "method": f"{count} POSTs on a steady schedule ({args.ack_rate:g}/s for {args.ack_seconds:g} s), "
        "time from each POST's response to its acknowledgment reaching the SMTP server",
        "submitted": len(sent),
        "not_303": len(bad),
        "acknowledged": len(found),
        "missing": len(references) - len(found),
        "duplicated": sum(len(times) - 1 for times in found.values()),
        "staff_notices": staff_notices,
        "latency_ms": summarize_ms(latencies),
        "post_response_ms": summarize_ms(response_times),
        "schedule_lag_ms": summarize_ms(lag),
    }


# --- 3. Email throughput -----------------------------------------------------------


def smtplib_loop(stack: BenchStack, count: int, *, connection_per_message: bool) -> dict[str, Any]:
    """Send ``count`` copies of a real acknowledgment (as the SMTP server
    received it) with nothing but smtplib: the most a client could do."""
    sample_path = stack.sink_log.with_name(stack.sink_log.name + ".sample.eml")
    if not sample_path.exists():
        # No acknowledgment sent yet in this run (phases skipped): send one.
        session = FormSession.open(stack.site_url, "/reset/")
        session.post(session.body(patient("sample@example.com")))
        wait_for(sample_path.exists, timeout=60, what="a first email at the SMTP server")
    raw = sample_path.read_bytes()
    tag = "loop-conn" if connection_per_message else "loop"
    messages = [
        re.sub(rb"(?im)^Message-ID:[^\r\n]*", f"Message-ID: <{tag}-{i}@bench.example>".encode(), raw, count=1)
        for i in range(count)
    ]
    started = time.monotonic()
    if connection_per_message:
        for message in messages:
            with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=20) as smtp:
                smtp.sendmail("portal-reset@practice.example", ["loop@example.com"], message)
    else:
        with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=20) as smtp:
            for message in messages:
                smtp.sendmail("portal-reset@practice.example", ["loop@example.com"], message)
    seconds = time.monotonic() - started
    return {"emails": count, "seconds": round(seconds, 2), "per_second": round(count / seconds, 1)}


def measure_email_throughput(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    count = args.emails
    log(f"email throughput: plain smtplib loops, then {count} outbox rows through the worker")
    loop = smtplib_loop(stack, count, connection_per_message=False)
    loop_per_connection = smtplib_loop(stack, count, connection_per_message=True)
    stack.settle()
    queued = json.loads(stack.python("-m", "bench.jobs", "queue-emails", "--count", str(count)).splitlines()[-1])
    prefixes = {f"<outbox-{pk}." for pk in queued["ids"]}

    def received() -> list[float]:
        return [t for t, message_id, _, _ in read_sink(stack) if message_id.split(".", 1)[0] + "." in prefixes]

    wait_for(lambda: len(received()) >= count, timeout=args.email_wait, what=f"{count} queued emails at the server")
    time.sleep(1)
    times = received()
    seconds = max(times) - queued["committed"]
    worker = {
        "emails": count,
        "received": len(times),
        "duplicated": len(times) - count,
        "seconds": round(seconds, 2),
        "publish_seconds": round(queued["published"] - queued["committed"], 2),
        "per_second": round(count / seconds, 1),
    }
    return {
        "method": f"{count} acknowledgments queued in one transaction; from its commit to the last one at the "
        "server. Plain loop: the same message sent with smtplib, one connection for all",
        "worker": worker,
        "smtplib_loop": loop,
        "smtplib_loop_connection_per_message": loop_per_connection,
        "ratio": round(worker["per_second"] / loop["per_second"], 3),
        "ratio_vs_connection_per_message": round(worker["per_second"] / loop_per_connection["per_second"], 3),
    }


# --- 4. The staff list at scale ---------------------------------------------------------


def admin_variants(stack: BenchStack) -> dict[str, str]:
    reference = stack.scalar(
        "SELECT reference FROM requests_app_resetrequest WHERE last_name <> %s ORDER BY id DESC LIMIT 1",
        (RARE_LAST_NAME,),
    )
    newest = stack.scalar("SELECT id FROM requests_app_resetrequest ORDER BY id DESC LIMIT 1")
    return {
        "default": ADMIN_LIST,
        "status=new": ADMIN_LIST + "?status__exact=new",
        "status=resolved": ADMIN_LIST + "?status__exact=resolved",
        "overdue": ADMIN_LIST + "?overdue=yes",
        "search reference": ADMIN_LIST + "?q=" + quote(reference),
        "search last name (common)": ADMIN_LIST + "?q=Garcia",
        "search last name (rare)": ADMIN_LIST + "?q=" + RARE_LAST_NAME,
        # One request's page: its earlier requests and the next one in the queue.
        "request page": f"{ADMIN_LIST}{newest}/change/",
    }


def query_counts(stack: BenchStack, variants: dict[str, str]) -> dict[str, Any]:
    out = stack.python(
        "-m", "bench.jobs", "query-counts", "--login", BENCH_USER, "--spec", json.dumps(variants), timeout=300
    )
    return json.loads(out.splitlines()[-1])


def admin_browser(stack: BenchStack) -> Browser:
    browser = Browser(stack.site_url, timeout=60)
    form = browser.load_form("/admin/login/?next=/admin/")
    response = browser.post_form(form, {"username": BENCH_USER, "password": BENCH_PASSWORD})
    if response.status != 302:
        raise SystemExit(f"admin login answered {response.status}, not 302:\n{response.text[:2000]}")
    return browser


def time_pages(browser: Browser, variants: dict[str, str], loads: int) -> dict[str, Any]:
    results = {}
    for name, path in variants.items():
        for _ in range(3):  # warm: caches, the plan, the pages the query touches
            browser.get(path)
        times, rows, statuses = [], 0, set()
        for _ in range(loads):
            started = time.monotonic()
            response = browser.get(path)
            times.append(time.monotonic() - started)
            statuses.add(response.status)
            rows = response.text.count('class="action-checkbox"')
        results[name] = {"rows_on_page": rows, "statuses": sorted(statuses), **summarize_ms(times)}
    return results


def measure_admin(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    log("staff list: query counts at the current size")
    if _rows(stack, "requests_app_resetrequest") == 0:
        # The earlier phases were skipped: a few requests to count against.
        stack.manage("seed_demo", "--requests", "100", "--seed", "2")
    variants = admin_variants(stack)
    small_rows = _rows(stack, "requests_app_resetrequest")
    counts_small = query_counts(stack, variants)
    # seed_demo as it is, on a slice, to know what a million would cost it.
    started = time.monotonic()
    stack.manage("seed_demo", "--requests", str(args.seed_demo_sample), "--seed", "1")
    seed_demo_seconds = time.monotonic() - started
    log(f"seeding to {args.rows:,} requests (bench/jobs.py seed-fast)")
    seeded = json.loads(stack.python("-m", "bench.jobs", "seed-fast", "--total", str(args.rows)).splitlines()[-1])
    log(f"seeded in {seeded['seconds']} s; query counts and {args.admin_loads} loads per variant")
    counts_full = query_counts(stack, variants)
    browser = admin_browser(stack)
    timings = time_pages(browser, variants, args.admin_loads)
    pages = {}
    for name in variants:
        pages[name] = {
            **timings[name],
            "queries": counts_full[name]["queries"],
            f"queries_at_{small_rows}_rows": counts_small[name]["queries"],
        }
    return {
        "method": f"{args.admin_loads} sequential loads per variant over HTTP (gunicorn) as a logged-in superuser, "
        "after 3 warm-up loads; query counts in-process (CaptureQueriesContext) on the same database",
        "rows": seeded["after"],
        "small_rows": small_rows,
        "seed_demo": {
            "requests": args.seed_demo_sample,
            "seconds": round(seed_demo_seconds, 1),
            "per_second": round(args.seed_demo_sample / seed_demo_seconds),
            "million_would_take_minutes": round(1_000_000 / (args.seed_demo_sample / seed_demo_seconds) / 60, 1),
        },
        "seed_fast": seeded,
        "variants": variants,
        "pages": pages,
        "query_count_independent_of_size": all(
            counts_full[n]["queries"] == counts_small[n]["queries"] for n in variants
        ),
    }


# --- The run ---------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs and 50,000 rows: checks that it all works")
    parser.add_argument("--seconds", type=float, default=10, help="each wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the wrk runs (default 3)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (default 4)")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--ack-rate", type=float, default=50)
    parser.add_argument("--ack-seconds", type=float, default=30)
    parser.add_argument("--ack-wait", type=float, default=120, help="how long to wait for the last acknowledgment")
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--email-wait", type=float, default=300)
    parser.add_argument("--rows", type=int, default=1_000_000, help="requests in the table for the staff list")
    parser.add_argument("--seed-demo-sample", type=int, default=10_000)
    parser.add_argument("--admin-loads", type=int, default=50)
    parser.add_argument("--skip", action="append", default=[], choices=["throughput", "ack", "email", "admin"])
    parser.add_argument("--keep-db", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument(
        "--out", type=Path, help=f"the headline figures (default {RESULTS.relative_to(REPO)}; none for --quick)"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.ack_seconds = 3, 1, 5
        args.emails, args.rows, args.seed_demo_sample, args.admin_loads = 200, 50_000, 1000, 10
    return args


def main() -> None:
    args = parse_args()
    wrk_path()
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    root = REPO / "var" / "bench" / run_id
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_before": load_average(),
        "quick": args.quick,
    }
    log(f"load average {results['load_average_before']} on {results['machine']['cores']} cores; logs in {root}")
    stack = BenchStack(root=root, admin_url=postgres_admin_url())
    memory = PeakMemory()
    started = time.monotonic()
    try:
        stack.start()
        assert stack.web is not None and stack.worker is not None
        memory.watch("web_worker", stack.web.pid, what="children")
        memory.watch("celery_main", stack.worker.pid, what="itself")
        memory.watch("celery_pool", stack.worker.pid, what="children")
        memory.start()
        stack.python("-m", "bench.jobs", "superuser", "--username", BENCH_USER, "--password", BENCH_PASSWORD)
        log(f"stack up at {stack.site_url} (database {stack.db_name})")
        if "throughput" not in args.skip:
            results["throughput"] = measure_throughput(stack, args, run_id)
        if "ack" not in args.skip:
            stack.settle()
            results["ack_latency"] = measure_ack_latency(stack, args, run_id)
        if "email" not in args.skip:
            results["email_throughput"] = measure_email_throughput(stack, args)
        if "admin" not in args.skip:
            stack.settle()
            results["admin_list"] = measure_admin(stack, args)
        results["memory"] = memory.stop()
    finally:
        stack.stop(keep_db=args.keep_db)
        if args.keep_db:
            log(f"kept database {stack.db_name}")
    results["load_average_after"] = load_average()
    results["seconds"] = round(time.monotonic() - started)
    results["targets"] = check_targets(results)
    full = root / "results-full.json"
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_table(results))
    log(f"wrote {full.relative_to(REPO)} in {results['seconds']} s")
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        out.write_text(json.dumps(headline(results, full_results=str(full.relative_to(REPO))), indent=2) + "\n")
        log(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    try:
        main()
    except subprocess.TimeoutExpired as exc:
        sys.exit(f"timed out: {exc}")
