"""The production processes for the benchmark, on a fresh PostgreSQL
database, a Redis server of the benchmark's own, and the SMTP sink.

Reuses the test suite's helpers (tests/support/: ManagedProcess,
production_env, ThrowawayRedis, wait_for) and differs from its Stack
where production does: gunicorn reads gunicorn.conf.py (2 sync workers,
worker recycling, the access log), the Celery worker runs as compose runs
it (default concurrency: one pool process per core), the SMTP server is a
process of its own, and the database is created with a non-C collation
(ICU en-US) like the postgres image's default en_US.utf8, so that a plain
index cannot serve LIKE 'x%' here when it could not in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from tests.support.polling import free_port, wait_for
from tests.support.processes import BIN, ManagedProcess, production_env
from tests.support.redis_servers import ThrowawayRedis
from tests.support.requirements import check_postgres

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def postgres_admin_url() -> str:
    return os.environ.get("BENCH_POSTGRES_URL") or os.environ.get(
        "TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
    )


def create_database(admin_url: str) -> tuple[str, str]:
    """A new database (name, URL), collated like production's."""
    name = f"portal_reset_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        try:
            conn.execute(
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        except psycopg.Error:
            # A server without ICU: its default collation.
            conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class BenchStack:
    root: Path
    admin_url: str
    processes: list[ManagedProcess] = field(default_factory=list)
    redis: ThrowawayRedis | None = None
    db_name: str = ""
    database_url: str = ""
    web: ManagedProcess | None = None
    worker: ManagedProcess | None = None
    sink: ManagedProcess | None = None
    env: dict[str, str] = field(default_factory=dict)
    web_port: int = 0
    smtp_port: int = 0

    @property
    def site_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sink_log(self) -> Path:
        return self.root / "smtp.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if why := check_postgres(self.admin_url):
            raise SystemExit(f"make bench needs PostgreSQL: {why} (set BENCH_POSTGRES_URL)")
        redis_binary = shutil.which("redis-server")
        if redis_binary is None:
            raise SystemExit("make bench needs redis-server on PATH (apt-get install -y redis-server)")
        self.redis = ThrowawayRedis(redis_binary, self.root / "redis")
        self.redis.start()
        self.db_name, self.database_url = create_database(self.admin_url)
        self.web_port, self.smtp_port = free_port(), free_port()
        var_dir = self.root / "var"
        var_dir.mkdir(exist_ok=True)
        self.env = production_env(
            var_dir=var_dir,
            site_url=self.site_url,
            database_url=self.database_url,
            broker_url=self.redis.url(0),
            cache_url=self.redis.url(1),
            smtp_port=self.smtp_port,
            DJANGO_SETTINGS_MODULE="bench.settings",
            STATIC_ROOT=str(var_dir / "static"),
            PORT=str(self.web_port),
            WEB_CONCURRENCY="2",
            # Production's defaults, with the client's address from the
            # proxy's header as production has it: every load POST comes
            # from a client and a patient of its own (load.lua), so only
            # the bot-flood runs, which mean to, trip a limit or a trap.
            SUBMIT_MIN_SECONDS="3",
            SUBMIT_RATE_PER_EMAIL="5/h",
            SUBMIT_RATE_PER_ADDRESS="20/h",
            CLIENT_IP_HEADER="X-Real-IP",
            STAFF_MFA="0",
        )
        self.manage("migrate", "--no-input")
        self.manage("collectstatic", "--no-input")
        self.sink = self._spawn(
            "smtp sink",
            [PYTHON, "-m", "bench.smtp_sink", "--port", str(self.smtp_port), "--out", str(self.sink_log)],
        )
        wait_for(lambda: "ready" in self.sink.log(), timeout=20, what="the SMTP sink", diagnostics=self.sink.tail)
        # Bound to 127.0.0.1 only (gunicorn.conf.py binds 0.0.0.0, for the
        # container); every other setting comes from gunicorn.conf.py.
        self.web = self._spawn(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "portal_reset.wsgi",
            ],
        )
        self.worker = self._spawn(
            "celery worker",
            [str(BIN / "celery"), "-A", "portal_reset", "worker", "--loglevel=INFO", "--hostname", "bench@%h"],
        )
        wait_for(self._web_ready, timeout=60, what="gunicorn /healthz", interval=0.2, diagnostics=self.diagnostics)
        wait_for(
            lambda: " ready." in self.worker.log(),
            timeout=60,
            what="the Celery worker",
            interval=0.2,
            diagnostics=self.diagnostics,
        )

    def _spawn(self, name: str, args: list[str]) -> ManagedProcess:
        slug = name.replace(" ", "-")
        process = ManagedProcess(name, args, env=self.env, log_path=self.root / f"{slug}.log")
        self.processes.append(process)
        return process

    def _web_ready(self) -> bool:
        import http.client

        if self.web is not None and not self.web.alive():
            raise SystemExit(f"gunicorn exited\n{self.diagnostics()}")
        conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=3)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def manage(self, *args: str, timeout: float = 600) -> str:
        return self.python("manage.py", *args, timeout=timeout)

    def python(self, *args: str, timeout: float = 600) -> str:
        import subprocess

        result = subprocess.run(  # noqa: S603 - our own interpreter and scripts
            [PYTHON, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} exited with {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def scalar(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        return self.sql(query, params)[0][0]

    def outbox_busy(self) -> int:
        return int(self.scalar("SELECT count(*) FROM requests_app_outboundemail WHERE state IN ('pending', 'sending')"))

    def settle(self, *, timeout: float = 300) -> float:
        """Wait until the worker has sent everything in the outbox."""
        started = time.monotonic()
        wait_for(
            lambda: self.outbox_busy() == 0,
            timeout=timeout,
            what="the outbox to drain",
            interval=0.5,
            diagnostics=self.diagnostics,
        )
        return time.monotonic() - started

    @contextlib.contextmanager
    def worker_paused(self) -> Iterator[None]:
        """The Celery worker (all its processes) stopped, then resumed."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.worker.pid, signal.SIGCONT)

    def diagnostics(self) -> str:
        parts = [p.tail(30) for p in self.processes]
        if self.redis is not None:
            parts.append(self.redis.tail())
        return "\n".join(parts)

    def stop(self, *, keep_db: bool = False) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop(grace=10)
        if self.redis is not None:
            self.redis.stop()
        if self.db_name and not keep_db:
            drop_database(self.admin_url, self.db_name)
