"""Load: wrk (closed loop, as fast as the server answers) for throughput, and
a Python generator on a steady schedule (open loop) for latency.

Both send what a browser sends: the form as the page put it (the CSRF token,
the family formset's management form, the honeypot), filled in with a
different patient each time, with the cookies the page set and the Origin and
Referer of the page.
"""

from __future__ import annotations

import http.client
import itertools
import json
import shutil
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from tests.support.http_client import Browser

LUA = Path(__file__).with_name("load.lua")
UNIQUE = "__N__"  # load.lua puts a per-request string here


def patient(email: str, *, last_name: str = "Benchmark") -> dict[str, str]:
    """A form that passes every rule: a visit well past the 48-hour window."""
    return {
        "first_name": "Pat",
        "last_name": last_name,
        "date_of_birth": "1979-11-07",
        "email": email,
        "phone": "(617) 555-0142",
        "appointment_date": (date.today() - timedelta(days=5)).isoformat(),
        "reason": "link_expired",
        "details": "",
    }


# X-Real-IP of the POSTs sent from Python (ack latency, probes): each from a
# client of its own (an IPv6 /64 each), as wrk's are.
_PYTHON_CLIENTS = itertools.count(1)


@dataclass
class FormSession:
    """One browser that opened a form page: its cookies, and the form's
    fields as the page filled them (``overrides``: values put over the
    page's, such as the timing value of a form filled in a minute ago)."""

    site_url: str
    path: str
    cookie: str
    fields: list[tuple[str, str]]
    action: str
    overrides: dict[str, str] = field(default_factory=dict)
    # Whether POSTs carry X-Real-IP (CLIENT_IP_HEADER, portal-reset only).
    client_header: bool = False

    @classmethod
    def open(
        cls, site_url: str, path: str, *, overrides: dict[str, str] | None = None, client_header: bool = False
    ) -> FormSession:
        browser = Browser(site_url)
        form = browser.load_form(path)
        cookie = "; ".join(f"{name}={m.coded_value}" for name, m in browser.cookies.items())
        return cls(
            site_url=site_url,
            path=path,
            cookie=cookie,
            fields=form.fields,
            action=urlsplit(form.action).path,
            overrides=dict(overrides or {}),
            client_header=client_header,
        )

    def body(self, data: dict[str, str]) -> str:
        data = {**self.overrides, **data}
        fields = [(k, v) for k, v in self.fields if k not in data] + list(data.items())
        # "_" is never percent-encoded, so the placeholder survives.
        return urlencode(fields)

    def headers(self) -> dict[str, str]:
        headers = {
            "Cookie": self.cookie,
            "Origin": self.site_url,
            "Referer": self.site_url + self.path,
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "portal-reset-bench",
        }
        if self.client_header:
            n = next(_PYTHON_CLIENTS)
            headers["X-Real-IP"] = f"2001:db8:ffff:{n % 65536:x}::1"
        return headers

    def post(self, body: str, *, timeout: float = 30) -> tuple[int, str]:
        parts = urlsplit(self.site_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.request("POST", self.action, body=body.encode(), headers=self.headers())
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("Location", "")
        finally:
            conn.close()


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("make bench needs wrk: apt-get install -y wrk")
    return path


def run_wrk(
    session: FormSession,
    *,
    mode: str,
    body: str = "",
    seconds: float,
    connections: int,
    threads: int,
    address: str = "",
) -> dict[str, Any]:
    """``wrk`` against the form's URL for ``seconds``; returns load.lua's
    summary plus req/s. ``address``: X-Real-IP of each POST (load.lua)."""
    url = session.site_url + session.path
    args = [
        wrk_path(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        mode,
        session.cookie,
        session.site_url,
        session.site_url + session.path,
        body,
        address,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)  # noqa: S603
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({result.returncode})\n{result.stdout}\n{result.stderr}")
    summary: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds_run = summary["duration_us"] / 1e6
    summary["seconds"] = round(seconds_run, 2)
    summary["rps"] = round(summary["requests"] / seconds_run, 1)
    summary["latency_ms"] = {k: round(v / 1000, 1) for k, v in summary.pop("latency_us").items()}
    summary["connections"] = connections
    summary["threads"] = threads
    return summary


@dataclass
class Sent:
    index: int
    scheduled: float
    started: float
    responded: float
    status: int
    location: str


def steady_posts(
    session: FormSession,
    bodies: list[str],
    *,
    rate: float,
    workers: int = 16,
) -> list[Sent]:
    """POST each body at its slot of a steady schedule (``rate`` a second),
    whatever the server's answers so far: an open loop, so a slow server
    shows as latency, not as fewer requests."""
    results: list[Sent] = []
    lock = threading.Lock()

    def send(index: int, scheduled: float) -> None:
        started = time.monotonic()
        try:
            status, location = session.post(bodies[index])
        except OSError:
            status, location = 0, ""
        responded = time.monotonic()
        with lock:
            results.append(Sent(index, scheduled, started, responded, status, location))

    start = time.monotonic() + 0.2
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index in range(len(bodies)):
            slot = start + index / rate
            delay = slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, index, slot)
    return sorted(results, key=lambda s: s.index)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize_ms(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of seconds, in milliseconds."""
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50) * 1000, 1),
        "p95": round(percentile(values, 95) * 1000, 1),
        "p99": round(percentile(values, 99) * 1000, 1),
        "max": round(max(values) * 1000, 1),
        "mean": round(statistics.fmean(values) * 1000, 1),
    }
