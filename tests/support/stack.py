"""The whole system run like production for the tests marked ``services``:
gunicorn, a Celery worker and Celery beat, on a fresh PostgreSQL database
migrated for the module, Redis, and the in-process SMTP server
(tests/support/smtp.py). ``stack`` is one such system per test module."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from . import REPO
from .http_client import Browser, Response
from .polling import free_port, wait_for
from .postgres import fresh_postgres_database
from .processes import BIN, ManagedProcess, offline_production_env, production_env, run_manage
from .redis_servers import ThrowawayRedis, claimed_redis_db
from .requirements import check_redis, postgres_admin_url, service_missing, shared_redis_url
from .smtp import SmtpRecorder

# Every fixture of the harness but the browser's: a module that loads this
# one may also use postgres_database, redis_db_url, throwaway_redis, smtp_server.
pytest_plugins = [
    "tests.support.requirements",
    "tests.support.postgres",
    "tests.support.redis_servers",
    "tests.support.smtp",
]


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``manage.py collectstatic`` once per run (whitenoise's manifest
    storage needs it with DEBUG off); each stack links its STATIC_ROOT here."""
    var_dir = tmp_path_factory.mktemp("static-var")
    env = offline_production_env(var_dir=var_dir, database_url=postgres_admin_url())
    run_manage("collectstatic", "--noinput", env=env)
    return var_dir / "static"


_RECEIVED = re.compile(r"Task (?P<name>[\w.]+)\[(?P<id>[0-9a-f-]+)\] received")
# The outcome ends at the line's end or, with JSON log lines, at the quote.
_FINISHED = re.compile(r"Task (?P<name>[\w.]+)\[(?P<id>[0-9a-f-]+)\] (?!received)(?P<outcome>[^\"\n]*)")


class Stack:
    """gunicorn, a Celery worker and Celery beat, run like production against
    real PostgreSQL, Redis and the in-process SMTP server."""

    def __init__(
        self,
        *,
        root: Path,
        database_url: str,
        broker_url: str,
        cache_url: str,
        smtp: SmtpRecorder,
        static_root: Path,
        redis_server: ThrowawayRedis | None = None,
        extra_env: dict[str, str] | None = None,
        worker_concurrency: int = 2,
    ):
        self.root = root
        self.database_url = database_url
        self.broker_url = broker_url
        self.smtp = smtp
        self.redis_server = redis_server
        self.worker_concurrency = worker_concurrency
        self.web_port = free_port()
        self.site_url = f"http://127.0.0.1:{self.web_port}"
        var_dir = root / "var"
        var_dir.mkdir(parents=True, exist_ok=True)
        (var_dir / "static").symlink_to(static_root, target_is_directory=True)
        self.env = production_env(
            var_dir=var_dir,
            site_url=self.site_url,
            database_url=database_url,
            broker_url=broker_url,
            cache_url=cache_url,
            smtp_port=smtp.port,
            **(extra_env or {}),
        )
        self.web: ManagedProcess | None = None
        self.beat: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []  # every worker started, the live one last
        # Task messages a killed worker had taken: the broker gives them to
        # another worker only after the visibility timeout (an hour).
        self.orphaned_task_ids: set[str] = set()

    # Processes

    def start(self) -> None:
        self.web = ManagedProcess(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "portal_reset.wsgi:application",
                "--bind", f"127.0.0.1:{self.web_port}",
                "--workers", "2",
                "--worker-class", "sync",
                "--timeout", "30",
                "--graceful-timeout", "5",
                "--log-level", "info",
            ],
            env=self.env,
            log_path=self.root / "gunicorn.log",
        )  # fmt: skip
        self.beat = ManagedProcess(
            "celery beat",
            [str(BIN / "celery"), "-A", "portal_reset", "beat", "--loglevel=INFO"],
            env=self.env,
            log_path=self.root / "beat.log",
        )
        self.start_worker(wait=False)
        self.wait_ready()

    def start_worker(self, *, wait: bool = True) -> ManagedProcess:
        number = len(self.workers) + 1
        worker = ManagedProcess(
            f"celery worker {number}",
            [
                str(BIN / "celery"), "-A", "portal_reset", "worker",
                "--loglevel=INFO",
                f"--concurrency={self.worker_concurrency}",
                "--hostname", f"w{number}-{uuid.uuid4().hex[:6]}@%h",
                "--without-mingle", "--without-gossip",
            ],
            env=self.env,
            log_path=self.root / f"worker-{number}.log",
        )  # fmt: skip
        self.workers.append(worker)
        if wait:
            self._wait_worker_ready(worker)
        return worker

    @property
    def worker(self) -> ManagedProcess:
        return self.workers[-1]

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool processes, as the kernel's OOM
        killer or a lost machine would: no cleanup, no acknowledgment."""
        self.worker.kill(signal.SIGKILL)
        self.orphaned_task_ids |= self._unacked_task_ids()

    def _unacked_task_ids(self) -> set[str]:
        client = self.broker()
        try:
            return {json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")}
        finally:
            client.close()

    def wait_ready(self) -> None:
        wait_for(
            lambda: self._get_status("/healthz") == 200,
            timeout=40,
            what="gunicorn to answer GET /healthz with 200",
            interval=0.2,
            diagnostics=self.diagnostics,
        )
        self._wait_worker_ready(self.worker)
        wait_for(
            lambda: "Starting..." in self.beat.log() if self.beat else True,
            timeout=30,
            what="celery beat to start",
            interval=0.2,
            diagnostics=self.diagnostics,
        )

    def _wait_worker_ready(self, worker: ManagedProcess) -> None:
        def ready() -> bool:
            if not worker.alive():
                raise AssertionError(f"{worker.name} exited\n{self.diagnostics()}")
            return " ready." in worker.log()

        wait_for(ready, timeout=40, what=f"{worker.name} to be ready", interval=0.2, diagnostics=self.diagnostics)

    def _get_status(self, path: str) -> int | None:
        try:
            return Browser(self.site_url, timeout=3).get(path).status
        except OSError:
            return None

    def stop(self) -> None:
        for process in [self.web, self.beat, *self.workers]:
            if process is not None:
                process.stop()

    def processes(self) -> list[ManagedProcess]:
        return [p for p in [self.web, self.beat, *self.workers] if p is not None]

    def diagnostics(self) -> str:
        parts = [p.tail() for p in self.processes()]
        if self.redis_server is not None:
            parts.append(self.redis_server.tail())
        parts.append(self.smtp.summary())
        return "\n".join(parts)

    def log_sizes(self) -> dict[Path, int]:
        return {p.log_path: p.log_path.stat().st_size for p in self.processes() if p.log_path.exists()}

    def logs_since(self, sizes: dict[Path, int]) -> str:
        chunks = []
        for process in self.processes():
            with process.log_path.open("rb") as f:
                f.seek(sizes.get(process.log_path, 0))
                chunks.append(f"----- {process.name} -----\n{f.read().decode(errors='replace')}")
        return "\n".join(chunks)

    # The patient's side

    def browser(self) -> Browser:
        return Browser(self.site_url)

    def submit(self, form: dict[str, str]) -> Submitted:
        """A patient fills in /reset/ in a browser and sends it; must be
        answered with 303 to the confirmation page."""
        browser = self.browser()
        response = browser.submit_form("/reset/", form)
        if response.status != 303:
            raise AssertionError(
                f"POST /reset/ answered {response.status}, not 303\n{response.text[:3000]}\n{self.diagnostics()}"
            )
        return Submitted(response=response, reference=reference_from_location(response.location), browser=browser)

    def submit_offline(self, *forms: dict[str, str]) -> list[str]:
        """File requests through the service layer with the broker out of
        reach, so that their outbox rows stay pending and nothing is queued
        (as when Redis is down at submit time). Returns the references."""
        code = (
            "import json, sys\n"
            "from datetime import date\n"
            "import django\n"
            "django.setup()\n"
            "from requests_app import services\n"
            "for d in json.loads(sys.argv[-1]):\n"
            "    r = services.reset_submit(submission=services.Submission(\n"
            "        first_name=d['first_name'], last_name=d['last_name'],\n"
            "        date_of_birth=date.fromisoformat(d['date_of_birth']), email=d['email'],\n"
            "        phone=d['phone'], appointment_date=date.fromisoformat(d['appointment_date']),\n"
            "        reason=d['reason']))\n"
            "    print('REFERENCE=' + r.reset.reference)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, json.dumps(forms)],
            cwd=REPO,
            env={**self.env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        references = re.findall(r"REFERENCE=(\S+)", result.stdout)
        if result.returncode != 0 or len(references) != len(forms):
            raise AssertionError(f"offline submission failed\n{result.stdout}\n{result.stderr}")
        return references

    # The database

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            if cursor.description is None:
                return []
            names = [c.name for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def outbox(self, reference: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The outbox rows of one request, oldest first."""
        rows = self.sql(
            "SELECT e.* FROM requests_app_outboundemail e JOIN requests_app_resetrequest r ON r.id = e.reset_id "
            "WHERE r.reference = %s ORDER BY e.id",
            (reference,),
        )
        return [row for row in rows if kind is None or row["kind"] == kind]

    def acknowledgment(self, reference: str) -> dict[str, Any]:
        rows = self.outbox(reference, "acknowledgment")
        assert len(rows) == 1, rows
        return rows[0]

    # The broker

    def publish(self, task: str, args: list[Any], *, task_id: str | None = None, queue: str | None = None) -> str:
        """Put a task message on the broker the way the app does (JSON, the
        default queue unless ``queue``) and return its id."""
        from celery import Celery

        app = Celery("tests", broker=self.broker_url, set_as_current=False)
        app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry=False)
        try:
            result = app.send_task(task, args=args, task_id=task_id or str(uuid.uuid4()), queue=queue)
        finally:
            app.close()
        return str(result.id)

    def broker(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker_url, socket_connect_timeout=2, socket_timeout=5)

    def task_outcomes(self, task_id: str) -> list[str]:
        """What the live worker logged as each run's outcome of ``task_id``."""
        return [m["outcome"] for m in _FINISHED.finditer(self.worker.log()) if m["id"] == task_id]

    def sweep(self, *, timeout: float = 30) -> int:
        """Run the scheduler's sweep task once through the broker, as beat
        does each minute; wait for it and return how many emails it queued."""
        task_id = self.publish("requests_app.tasks.sweep_outbox", [])
        outcome = wait_for(
            lambda: self.task_outcomes(task_id),
            timeout=timeout,
            what=f"the sweep task {task_id} to run",
            interval=0.1,
            diagnostics=self.diagnostics,
        )[0]
        match = re.match(r"succeeded in [\d.e-]+s: (\d+)", outcome)
        assert match, f"sweep task ended with: {outcome}"
        return int(match.group(1))

    def settle(self, *, timeout: float = 60) -> None:
        """Wait until the worker has nothing left to do: the queue is empty,
        and every task the live worker received has finished (a retry with a
        countdown counts as unfinished until it ran). Checked twice in a row,
        so a message between the queue and the worker's log is not missed."""

        def idle_once() -> bool:
            log = self.worker.log()
            received = Counter(m["id"] for m in _RECEIVED.finditer(log))
            finished = Counter(m["id"] for m in _FINISHED.finditer(log))
            if any(finished[task_id] < count for task_id, count in received.items()):
                return False
            client = self.broker()
            try:
                if client.llen("celery"):
                    return False
            finally:
                client.close()
            return self._unacked_task_ids() <= set(received) | self.orphaned_task_ids

        def idle() -> bool:
            if not idle_once():
                return False
            time.sleep(0.3)
            return idle_once()

        wait_for(
            idle, timeout=timeout, what="the worker to finish every task", interval=0.1, diagnostics=self.diagnostics
        )


@dataclass
class Submitted:
    response: Response
    reference: str
    browser: Browser


def reference_from_location(location: str) -> str:
    match = re.fullmatch(r"(?:https?://[^/]+)?/reset/submitted/(?P<ref>[^/]+)/", location or "")
    assert match, f"unexpected redirect Location: {location!r}"
    return match["ref"]


@contextlib.contextmanager
def running_stack(**options: Any) -> Iterator[Stack]:
    """A started Stack (``options`` are Stack's), stopped on the way out."""
    stack = Stack(**options)
    try:
        stack.start()
        yield stack
    except BaseException:
        print(stack.diagnostics())
        raise
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def service_stack(
    request: pytest.FixtureRequest,
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    collected_static: Path,
) -> Iterator[Stack]:
    """One stack for the whole test module, on a fresh PostgreSQL database.

    The module chooses with module-level names:
    ``STACK_REDIS = "shared"`` (default: a claimed database on the local
    Redis, TEST_REDIS_URL) or ``"throwaway"`` (a redis-server of its own that
    tests may stop and start), and ``STACK_ENV`` (extra environment).
    """
    mode = getattr(request.module, "STACK_REDIS", "shared")
    extra_env = dict(getattr(request.module, "STACK_ENV", {}))
    root = tmp_path_factory.mktemp("stack")
    with contextlib.ExitStack() as exits:
        throwaway = None
        if mode == "throwaway":
            binary = shutil.which("redis-server") or service_missing("redis-server", "it is not on PATH")
            throwaway = ThrowawayRedis(binary, root / "redis")
            throwaway.start()
            exits.callback(throwaway.stop)
            broker_url, cache_url = throwaway.url(0), throwaway.url(1)
        else:
            shared = shared_redis_url()
            if why := check_redis(shared):
                service_missing("Redis", why)
            broker_url = exits.enter_context(claimed_redis_db(shared))
            cache_url = broker_url  # one database; Django's cache keys are prefixed ":1:"
        smtp = SmtpRecorder()
        smtp.start()
        exits.callback(smtp.stop)
        database_url = exits.enter_context(fresh_postgres_database(postgres_server))
        stack = exits.enter_context(
            running_stack(
                root=root,
                database_url=database_url,
                broker_url=broker_url,
                cache_url=cache_url,
                smtp=smtp,
                static_root=collected_static,
                redis_server=throwaway,
                extra_env=extra_env,
            )
        )
        yield stack


@pytest.fixture
def stack(service_stack: Stack) -> Iterator[Stack]:
    """The module's stack, checked before each test: SMTP scripts and holds
    cleared, Redis and a worker running. After the test, what the processes
    logged during it is printed (pytest shows it when the test failed)."""
    service_stack.smtp.reset()
    if service_stack.redis_server is not None and service_stack.redis_server.process is None:
        service_stack.redis_server.start()
    if not service_stack.worker.alive():
        service_stack.start_worker()
    sizes = service_stack.log_sizes()
    yield service_stack
    service_stack.smtp.reset()
    print(service_stack.logs_since(sizes))
    print(service_stack.smtp.summary())
