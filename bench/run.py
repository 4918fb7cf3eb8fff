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
import itertools
import json
import os
import platform
import re
import smtplib
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from tests.support.http_client import Browser
from tests.support.polling import wait_for

from .cpu import WorkerCpu
from .helpdesk import PATH as HELPDESK_PATH
from .helpdesk import TICKET_TABLE as HELPDESK_TABLE
from .helpdesk import HelpdeskSite, ensure_venv
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
    """What the figures were measured on: the CPU as the kernel names it
    (a VM's is often only its brand), its family/model and clock, the
    cores, the memory."""
    info: dict[str, str] = {}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "flags":
                flags = set(value.split())
            if key and key not in info:
                info[key] = value
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
    with contextlib.suppress(Exception):
        versions["postgresql"] = str(psycopg.connect(postgres_admin_url()).info.server_version)
    cpu = info.get("model name", "unknown")
    details = [f"family {info['cpu family']} model {info['model']}"] if "cpu family" in info else []
    if "cpu MHz" in info:
        details.append(f"{float(info['cpu MHz']) / 1000:.1f} GHz")
    if "hypervisor" in flags:
        details.append("virtual machine")
    return {
        "cpu": cpu + (f" ({', '.join(details)})" if details else ""),
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "versions": versions,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- 1. Submit throughput, the floor, helpdesk, the bot flood --------------------------


def _rows(stack: BenchStack, table: str) -> int:
    return int(stack.scalar(f'SELECT count(*) FROM "{table}"'))  # noqa: S608 - our own table names


@dataclass
class Target:
    """A form page to load: where, how its POSTs are counted and answered."""

    name: str
    session: FormSession
    cpu: WorkerCpu
    # Rows a valid POST makes, counted in the target's own database.
    count_rows: Callable[[], int]
    status: str


def _run(target: Target, args: argparse.Namespace, *, mode: str, seconds: float, body: str = "", address: str = ""):
    """One wrk run against ``target``, with its workers' CPU per request."""
    before = target.cpu.total_ms()
    summary = run_wrk(
        target.session,
        mode=mode,
        body=body,
        seconds=seconds,
        connections=args.connections,
        threads=args.wrk_threads,
        address=address,
    )
    summary["cpu_ms"] = round(target.cpu.total_ms() - before, 1)
    summary["cpu_ms_per_request"] = round(summary["cpu_ms"] / max(summary["requests"], 1), 3)
    return summary


def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Two halves of one measurement as one run: requests, time, CPU, rows
    and answers added up; latencies the halves' mean, weighted by requests."""
    if len(runs) == 1:
        return runs[0]
    requests = sum(run["requests"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    merged = dict(runs[0])
    merged.update(
        requests=requests,
        seconds=round(seconds, 2),
        duration_us=sum(run["duration_us"] for run in runs),
        rps=round(requests / seconds, 1),
        cpu_ms=round(sum(run["cpu_ms"] for run in runs), 1),
        cpu_ms_per_request=round(sum(run["cpu_ms"] for run in runs) / max(requests, 1), 3),
        statuses=dict(sum((Counter(run["statuses"]) for run in runs), Counter())),
        errors=dict(sum((Counter(run["errors"]) for run in runs), Counter())),
        latency_ms={
            key: round(sum(run["latency_ms"][key] * run["requests"] for run in runs) / max(requests, 1), 1)
            for key in runs[0]["latency_ms"]
        },
        halves_rps=[run["rps"] for run in runs],
    )
    for key in ("rows_created",):
        if key in runs[0]:
            merged[key] = sum(run[key] for run in runs)
    for key in ("valid", "all_answered"):
        if key in runs[0]:
            merged[key] = all(run[key] for run in runs)
    return merged


def abba(calls: list[tuple[str, Callable[[], dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Each call twice, in the order A B C C B A, merged: a load that grows
    or fades on the machine during the round weighs on every target alike."""
    halves: dict[str, list[dict[str, Any]]] = {}
    for key, call in [*calls, *reversed(calls)]:
        halves.setdefault(key, []).append(call())
    return {key: _merge(runs) for key, runs in halves.items()}


def _post_run(
    target: Target, body: str, args: argparse.Namespace, *, seconds: float, address: str = ""
) -> dict[str, Any]:
    before = target.count_rows()
    summary = _run(target, args, mode="post", seconds=seconds, body=body, address=address)
    # Requests wrk sent but stopped waiting for may still land: wait for them.
    time.sleep(1.0)
    after = target.count_rows()
    statuses = summary["statuses"]
    ok = statuses.get(target.status, 0)
    summary["rows_created"] = after - before
    summary["all_answered"] = set(statuses) <= {target.status} and not any(summary["errors"].values())
    # Every answer made a row; at most one request in flight per connection
    # was cut off by wrk's stop after the server took it.
    summary["valid"] = summary["all_answered"] and ok <= after - before <= ok + args.connections
    return summary


def _flood_run(
    stack: BenchStack, target: Target, kind: str, body: str, args: argparse.Namespace, *, address: str
) -> dict[str, Any]:
    """Bot POSTs that must be refused or held, answered as a submission is."""
    tables = ("requests_app_resetrequest", "requests_app_heldsubmission", "requests_app_requestevent")
    before = {table: _rows(stack, table) for table in tables}
    summary = _run(target, args, mode="post", seconds=args.flood_seconds, body=body, address=address)
    time.sleep(1.0)
    made = {table: _rows(stack, table) - before[table] for table in tables}
    summary["rows_created"] = made
    statuses, requests = summary["statuses"], summary["requests"]
    # wrk counts every answer that is not 2xx or 3xx as a "status" error: the
    # answers are judged below, by their statuses.
    errors = any(n for kind, n in summary["errors"].items() if kind != "status")
    held = made["requests_app_heldsubmission"]
    if kind in ("honeypot", "too_fast"):
        # Every one held (stored apart, no request), every one answered 303.
        valid = set(statuses) <= {"303"} and made["requests_app_resetrequest"] == 0
        valid = valid and statuses.get("303", 0) <= held <= statuses.get("303", 0) + args.connections
    elif kind == "email_limit":
        # One patient: the first POSTs file a request (and attach to it) up
        # to the limit; every one after is kept on its timeline, unanswered
        # by email, and all are answered 303 alike.
        valid = set(statuses) <= {"303"} and made["requests_app_resetrequest"] == 1 and held == 0
        valid = valid and made["requests_app_requestevent"] >= statuses.get("303", 0)
    else:  # address_limit: one client; past its limit a 429 and nothing stored
        valid = set(statuses) <= {"303", "429"} and statuses.get("429", 0) >= 0.9 * requests
        valid = valid and made["requests_app_resetrequest"] <= statuses.get("303", 0)
    summary["valid"] = valid and not errors
    return summary


def _median_spread(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "rounds": [round(v, 3) for v in values],
    }


def measure_throughput(
    stack: BenchStack, helpdesk: HelpdeskSite | None, args: argparse.Namespace, run_id: str
) -> dict[str, Any]:
    timing = json.loads(stack.python("-m", "bench.jobs", "timing-values").splitlines()[-1])
    filled_in = {timing["field"]: timing["ok"]}
    web_cpu = WorkerCpu(stack.web.pid)  # type: ignore[union-attr]
    ours = Target(
        "ours",
        FormSession.open(stack.site_url, "/reset/", overrides=filled_in, client_header=True),
        web_cpu,
        lambda: _rows(stack, "requests_app_resetrequest"),
        "303",
    )
    floor = Target(
        "floor",
        FormSession.open(stack.site_url, "/floor/"),
        web_cpu,
        lambda: _rows(stack, "bench_floor_floorrequest"),
        "303",
    )
    targets = [floor, ours]
    if helpdesk is not None:
        hd = Target(
            "helpdesk",
            FormSession.open(helpdesk.site_url, HELPDESK_PATH),
            WorkerCpu(helpdesk.web.pid),  # type: ignore[union-attr]
            lambda: int(_scalar(helpdesk.database_url, f'SELECT count(*) FROM "{HELPDESK_TABLE}"')),  # noqa: S608
            "302",
        )
        targets.append(hd)
    invocations = itertools.count(1)
    # Every wrk run's clients are new to the address limit: a /64 per run.
    run_group = itertools.count(0x100)

    def unique_clients() -> str:
        return f"2001:db8:{next(run_group):x}:__H__::1"

    def body(target: Target, **extra: str) -> str:
        """A new set of patients for each wrk run (load.lua's counter starts
        again at 1 each time): a patient seen before would be attached to
        their open request, not stored as a new one."""
        n = next(invocations)
        email = f"{target.name}-{run_id}-{n}-{UNIQUE}@example.com"
        if target.name == "helpdesk":
            return target.session.body(helpdesk.form_data(email))  # type: ignore[union-attr]
        return target.session.body({**patient(email), **extra})

    # One by hand first: a form that does not validate would make every
    # figure below meaningless.
    probes = [(ours, patient(f"probe-{run_id}@example.com", last_name=RARE_LAST_NAME))]
    probes.append((floor, patient(f"probe-{run_id}@example.com")))
    if helpdesk is not None:
        probes.append((hd, helpdesk.form_data(f"probe-{run_id}@example.com")))
    for target, data in probes:
        status, location = target.session.post(target.session.body(data))
        if str(status) != target.status or (target is ours and "/reset/submitted/" not in location):
            raise SystemExit(f"the probe POST to {target.name} answered {status} {location}: the form is refused")
    if _rows(stack, "requests_app_heldsubmission"):
        raise SystemExit("the probe POST to /reset/ was held, not filed: the timing value or the honeypot is wrong")
    log("warming up (2 s each)")
    for target in targets:
        _run(target, args, mode="get", seconds=2)
        with stack.worker_paused():
            _run(target, args, mode="post", seconds=2, body=body(target), address=unique_clients())
    stack.settle()

    floods: dict[str, Callable[[], tuple[str, str]]] = {
        # A bot that fills in every field, the hidden one too.
        "honeypot": lambda: (body(ours, website="https://spam.example/"), unique_clients()),
        # A bot that posts the form back the moment it is served.
        "too_fast": lambda: (body(ours, **{timing["field"]: timing["too_fast"]}), unique_clients()),
        # Email bombing: one address, from many clients.
        "email_limit": lambda: (
            ours.session.body(patient(f"bombed-{run_id}-{next(invocations)}@example.com")),
            unique_clients(),
        ),
        # One client, many patients.
        "address_limit": lambda: (body(ours), f"2001:db8:{next(run_group):x}:1::1"),
    }
    half = max(1, round(args.seconds / 2))  # wrk takes whole seconds

    def get_run(target: Target) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            summary = _run(target, args, mode="get", seconds=half)
            summary["valid"] = set(summary["statuses"]) <= {"200"}
            return summary

        return run

    def post_run(target: Target) -> Callable[[], dict[str, Any]]:
        address = unique_clients if target is ours else (lambda: "")
        return lambda: _post_run(target, body(target), args, seconds=half, address=address())

    rounds: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        result: dict[str, Any] = {"load_average": load_average()}
        result.update(abba([(f"{target.name}_get", get_run(target)) for target in targets]))
        # Every POST run with the Celery worker stopped (SIGSTOP): what the
        # web tier costs, the emails' work left for after.
        with stack.worker_paused():
            result.update(
                abba(
                    [
                        ("ours_post_web_only" if target is ours else f"{target.name}_post", post_run(target))
                        for target in targets
                    ]
                )
            )
            for kind, make in floods.items():
                flood_body, address = make()
                result[f"flood_{kind}"] = _flood_run(stack, ours, kind, flood_body, args, address=address)
        result["drain_seconds"] = round(stack.settle(), 1)
        if args.with_worker:
            result["ours_post"] = _post_run(ours, body(ours), args, seconds=args.seconds, address=unique_clients())
            result["drain_seconds_with_worker"] = round(stack.settle(), 1)
        rounds.append(result)
        parts = [
            f"{key} {run['rps']}/s {run['cpu_ms_per_request']} ms CPU"
            for key, run in result.items()
            if isinstance(run, dict)
        ]
        log(f"round {number}: " + "; ".join(parts) + f"; outbox drained in {result['drain_seconds']} s")

    keys = [key for key, run in rounds[0].items() if isinstance(run, dict)]

    def median_run(key: str) -> dict[str, Any]:
        """The round whose req/s is the median for this page."""
        ordered = sorted((r[key] for r in rounds), key=lambda run: run["rps"])
        return ordered[(len(ordered) - 1) // 2]

    def ratio(ours_key: str, other_key: str, figure: str = "rps") -> dict[str, Any]:
        # Each round's runs are back to back, so a load that comes and goes
        # on the machine weighs on both alike: each round's ratio, then
        # their median and spread.
        return _median_spread([r[ours_key][figure] / r[other_key][figure] for r in rounds])

    ratios = {
        "post_web_only_vs_floor": ratio("ours_post_web_only", "floor_post"),
        "get_vs_floor": ratio("ours_get", "floor_get"),
    }
    if helpdesk is not None:
        ratios["post_web_only_vs_helpdesk"] = ratio("ours_post_web_only", "helpdesk_post")
        ratios["get_vs_helpdesk"] = ratio("ours_get", "helpdesk_get")
    cpu_ratios = {kind: ratio(f"flood_{kind}", "floor_post", "cpu_ms_per_request") for kind in floods}
    cpu_ratios["valid_submission"] = ratio("ours_post_web_only", "floor_post", "cpu_ms_per_request")
    if args.with_worker:
        ratios["post_with_worker_vs_floor"] = ratio("ours_post", "floor_post")
    return {
        "method": f"wrk -t{args.wrk_threads} -c{args.connections}, {args.seconds:g} s per page and round in two "
        f"halves ordered A B C C B A ({args.flood_seconds:g} s per bot-flood run), {args.rounds} rounds, every "
        "POST run with the Celery worker stopped; a ratio is the median of the rounds' ratios (with their "
        "spread), figures the median round's; CPU is the gunicorn workers' user+system time per request",
        "rounds": rounds,
        "median": {key: median_run(key) for key in keys},
        "ratios": ratios,
        "cpu_ratios_vs_floor_post": cpu_ratios,
        "valid": all(r[k]["valid"] for r in rounds for k in keys),
    }


def _scalar(database_url: str, query: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


# --- 2. Acknowledgment latency ---------------------------------------------------------


class SinkLog:
    """The SMTP sink's log, read as it grows: each read parses only what was
    written since the last one. Re-reading the whole log on every poll cost
    this driver up to half a millisecond of CPU per email on the machine's
    two cores while the worker ran, and nothing while the smtplib loop did
    (it times itself): a weight on one side of the comparison."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.rows: list[tuple[float, str, str, str]] = []

    def read(self) -> list[tuple[float, str, str, str]]:
        if not self.path.exists():
            return self.rows
        with self.path.open("rb") as log_file:
            log_file.seek(self.offset)
            data = log_file.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            parts = line.decode().split(" ", 3)
            if len(parts) == 4:
                self.rows.append((float(parts[0]), parts[1], parts[2], parts[3]))
        return self.rows


_SINK_LOGS: dict[Path, SinkLog] = {}

# How often a phase waiting for emails looks at the sink's log. The figures
# come from the sink's own times of arrival, not from when a poll saw them.
SINK_POLL_SECONDS = 0.25


def read_sink(stack: BenchStack) -> list[tuple[float, str, str, str]]:
    """(time, Message-ID, reference, recipients) of every message received."""
    return _SINK_LOGS.setdefault(stack.sink_log, SinkLog(stack.sink_log)).read()


def filled_in_form(stack: BenchStack) -> FormSession:
    """/reset/ as a patient's browser loaded it, filled in over a minute."""
    timing = json.loads(stack.python("-m", "bench.jobs", "timing-values").splitlines()[-1])
    return FormSession.open(stack.site_url, "/reset/", overrides={timing["field"]: timing["ok"]}, client_header=True)


def measure_ack_latency(stack: BenchStack, args: argparse.Namespace, run_id: str) -> dict[str, Any]:
    session = filled_in_form(stack)
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
        wait_for(
            lambda: len(acks()) >= len(references),
            timeout=args.ack_wait,
            what="every acknowledgment",
            interval=SINK_POLL_SECONDS,
        )
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
        session = filled_in_form(stack)
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


def worker_batch(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    """``args.emails`` acknowledgments queued in one transaction: from its
    commit to the last one at the SMTP server."""
    count = args.emails
    queued = json.loads(stack.python("-m", "bench.jobs", "queue-emails", "--count", str(count)).splitlines()[-1])
    prefixes = {f"<outbox-{pk}." for pk in queued["ids"]}

    def received() -> list[float]:
        return [t for t, message_id, _, _ in read_sink(stack) if message_id.split(".", 1)[0] + "." in prefixes]

    wait_for(
        lambda: len(received()) >= count,
        timeout=args.email_wait,
        what=f"{count} queued emails at the server",
        interval=SINK_POLL_SECONDS,
    )
    time.sleep(1)
    times = received()
    seconds = max(times) - queued["committed"]
    return {
        "emails": count,
        "received": len(times),
        "duplicated": len(times) - count,
        "seconds": round(seconds, 2),
        "publish_seconds": round(queued["published"] - queued["committed"], 2),
        "per_second": round(count / seconds, 1),
    }


def measure_email_throughput(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    count = args.emails
    rounds = []
    for number in range(1, args.email_rounds + 1):
        stack.settle()
        loop = smtplib_loop(stack, count, connection_per_message=False)
        loop_per_connection = smtplib_loop(stack, count, connection_per_message=True)
        worker = worker_batch(stack, args)
        rounds.append(
            {
                "worker": worker,
                "smtplib_loop": loop,
                "smtplib_loop_connection_per_message": loop_per_connection,
                "ratio": worker["per_second"] / loop["per_second"],
                "ratio_vs_connection_per_message": worker["per_second"] / loop_per_connection["per_second"],
            }
        )
        log(
            f"email round {number}: worker {worker['per_second']}/s, loop {loop['per_second']}/s "
            f"({loop_per_connection['per_second']}/s a connection each): {rounds[-1]['ratio']:.3f}"
        )
    median_round = sorted(rounds, key=lambda r: r["ratio"])[(len(rounds) - 1) // 2]
    return {
        "method": f"{count} acknowledgments queued in one transaction; from its commit to the last one at the "
        f"server. Plain loop: the same message sent with smtplib, one connection for all. {args.email_rounds} rounds, "
        "each loop right before its worker run; the ratio is the median of the rounds' ratios",
        "rounds": rounds,
        "worker": median_round["worker"],
        "smtplib_loop": median_round["smtplib_loop"],
        "smtplib_loop_connection_per_message": median_round["smtplib_loop_connection_per_message"],
        "ratio": _median_spread([r["ratio"] for r in rounds]),
        "ratio_vs_connection_per_message": _median_spread([r["ratio_vs_connection_per_message"] for r in rounds]),
        "duplicated": sum(r["worker"]["duplicated"] for r in rounds),
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
    parser.add_argument(
        "--email-rounds",
        type=int,
        default=5,
        help="rounds of the email phase (default 5: about 6 s each, and the plain loop alone swings by a third)",
    )
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
    parser.add_argument("--flood-seconds", type=float, default=5, help="each bot-flood wrk run (default 5)")
    parser.add_argument(
        "--with-worker", action="store_true", help="also POST with the Celery worker running (not a target)"
    )
    parser.add_argument("--no-helpdesk", action="store_true", help="leave django-helpdesk out")
    parser.add_argument("--skip", action="append", default=[], choices=["throughput", "ack", "email", "admin"])
    parser.add_argument("--keep-db", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument(
        "--out", type=Path, help=f"the headline figures (default {RESULTS.relative_to(REPO)}; none for --quick)"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.flood_seconds, args.rounds, args.email_rounds, args.ack_seconds = 3, 2, 1, 1, 5
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
    helpdesk = None
    if "throughput" not in args.skip and not args.no_helpdesk:
        helpdesk = HelpdeskSite(root=root / "helpdesk", admin_url=stack.admin_url, bin_dir=ensure_venv(log))
    memory = PeakMemory()
    started = time.monotonic()
    try:
        stack.start()
        if helpdesk is not None:
            helpdesk.start()
            log(f"django-helpdesk up at {helpdesk.site_url} (database {helpdesk.db_name})")
        assert stack.web is not None and stack.worker is not None
        memory.watch("web_worker", stack.web.pid, what="children")
        memory.watch("celery_main", stack.worker.pid, what="itself")
        memory.watch("celery_pool", stack.worker.pid, what="children")
        memory.start()
        stack.python("-m", "bench.jobs", "superuser", "--username", BENCH_USER, "--password", BENCH_PASSWORD)
        log(f"stack up at {stack.site_url} (database {stack.db_name})")
        if "throughput" not in args.skip:
            results["throughput"] = measure_throughput(stack, helpdesk, args, run_id)
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
        if helpdesk is not None:
            helpdesk.stop()
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
