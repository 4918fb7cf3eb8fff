"""Real services for the tests marked ``services``: PostgreSQL, Redis, an
SMTP server, and the app's own processes (gunicorn, Celery worker, beat).

A test module loads these fixtures with ``pytest_plugins = ["tests.services"]``
and uses ``stack`` (one running system per module, see ``service_stack``),
or the pieces: ``postgres_database``, ``redis_db_url``, ``throwaway_redis``,
``smtp_server``. Without PostgreSQL or Redis the tests skip with the reason,
or fail when ``REQUIRE_SERVICES=1`` (CI, see .ci/run).

The app's processes run with a production-like environment (``DEBUG=0``,
every required value set), on a fresh PostgreSQL database migrated for the
module, with an aiosmtpd server in this process that records every message
and can refuse or hold one (tests/smtp_server.py); patients are played by
tests/browser.py. Conditions are waited for by polling with a deadline;
nothing asserts on how long a sleep took.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from .browser import Browser, Response
from .polling import free_port, wait_for
from .smtp_server import SmtpRecorder, smtp_server

__all__ = ["smtp_server"]  # a fixture, for the modules that load this one as a plugin

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin/: celery, gunicorn
MANAGE = REPO / "manage.py"

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
STAFF_NOTIFY_EMAIL = "staff-inbox@practice.example"
DEFAULT_FROM_EMAIL = "portal-reset@practice.example"


# --- Availability -------------------------------------------------------------


def service_missing(name: str, why: str) -> NoReturn:
    """Skip the test, or fail it when the run requires the real services."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required (REQUIRE_SERVICES=1) but {why}", pytrace=False)
    pytest.skip(f"{name} is not available: {why} (set REQUIRE_SERVICES=1 to make this a failure)")


def postgres_admin_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def shared_redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)


def check_postgres(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"cannot connect to {_without_password(url)}: {exc}".strip()
    return None


def check_redis(url: str) -> str | None:
    """None when Redis answers at ``url``, else why not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"cannot connect to {_without_password(url)}: {exc}"
    finally:
        client.close()
    return None


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a PostgreSQL server that answers (TEST_POSTGRES_URL)."""
    url = postgres_admin_url()
    if why := check_postgres(url):
        service_missing("PostgreSQL", why)
    return url


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The URL of the local Redis that answers (TEST_REDIS_URL)."""
    url = shared_redis_url()
    if why := check_redis(url):
        service_missing("Redis", why)
    return url


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """``redis-server``, to run a throwaway Redis this run can stop at will."""
    path = shutil.which("redis-server")
    if path is None:
        service_missing("redis-server", "the redis-server program is not on PATH")
    return path


# --- Small helpers ------------------------------------------------------------


class ManagedProcess:
    """A subprocess in its own process group (so a kill reaches the children
    too: gunicorn's and Celery's pool processes), its output in a file."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], log_path: Path, cwd: Path = REPO):
        self.name = name
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        text = self.log().splitlines()[-lines:]
        state = "running" if self.alive() else f"exited with {self.popen.returncode}"
        return f"----- {self.name} ({state}), {self.log_path} -----\n" + "\n".join(text)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group and wait for the leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=15)

    def stop(self, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Whatever is left of the group (pool children) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._log.close()


def base_env(**values: str) -> dict[str, str]:
    """A clean environment for the app's processes: nothing of the test
    runner's own settings (pytest-env sets DEBUG=1), only what is given."""
    env = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER") if k in os.environ}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["DJANGO_SETTINGS_MODULE"] = "portal_reset.settings"
    env.update(values)
    return env


def production_env(
    *,
    var_dir: Path,
    site_url: str,
    database_url: str,
    broker_url: str,
    cache_url: str,
    smtp_port: int,
    **extra: str,
) -> dict[str, str]:
    """What a production deployment sets (SPEC "Configuration"), pointed at
    the test's services. Rate limits are high: a burst comes from one address."""
    values = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SITE_URL": site_url,
        "SECURE_SSL_REDIRECT": "0",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CACHE_URL": cache_url,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port),
        "DEFAULT_FROM_EMAIL": DEFAULT_FROM_EMAIL,
        "STAFF_NOTIFY_EMAIL": STAFF_NOTIFY_EMAIL,
        "SUBMIT_MIN_SECONDS": "0",
        "SUBMIT_RATE_PER_EMAIL": "1000/h",
        "SUBMIT_RATE_PER_ADDRESS": "100000/h",
        "STAFF_MFA": "0",
        "VAR_DIR": str(var_dir),
        # Collected once per run into a temporary VAR_DIR, never the checkout.
        "STATIC_ROOT": str(var_dir / "static"),
        "LOG_LEVEL": "INFO",
    }
    values.update(extra)
    return base_env(**values)


def run_manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``manage.py <args>`` in a subprocess; fails the test with its output."""
    result = subprocess.run(
        [sys.executable, str(MANAGE), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"manage.py {' '.join(args)} exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result


# --- PostgreSQL -----------------------------------------------------------------


def _database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return parts._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str, *, migrate_env: dict[str, str] | None = None) -> Iterator[str]:
    """A new, uniquely named database with the app's migrations applied
    (``manage.py migrate`` in a subprocess). Yields its URL; drops it after,
    ending whatever connections the app's processes still hold."""
    name = f"portal_reset_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        # Not waiting for each commit to reach the disk halves the time of
        # migrate here; it matters only if PostgreSQL itself crashes.
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')
    url = _database_url(admin_url, name)
    try:
        env = migrate_env or production_env(
            var_dir=Path("/nonexistent"),
            site_url="http://127.0.0.1:1",
            database_url=url,
            broker_url="redis://127.0.0.1:1/0",
            cache_url="locmemcache://",
            smtp_port=1,
        )
        env = {**env, "DATABASE_URL": url}
        run_manage("migrate", "--noinput", env=env)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_database(postgres_server: str, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL database of this test's own."""
    env = production_env(
        var_dir=tmp_path / "var",
        site_url="http://127.0.0.1:1",
        database_url="",
        broker_url="redis://127.0.0.1:1/0",
        cache_url="locmemcache://",
        smtp_port=1,
    )
    with fresh_postgres_database(postgres_server, migrate_env=env) as url:
        yield url


# --- Redis ----------------------------------------------------------------------

_REDIS_CLAIM_KEY = "portal-reset-tests:claimed-by"


@contextlib.contextmanager
def claimed_redis_db(url: str, *, preferred: tuple[int, ...] = (13, 14, 15, 12, 11, 10)) -> Iterator[str]:
    """A database number on the shared Redis that nothing else uses: the
    first of ``preferred`` that is empty, claimed with a marker key so that a
    parallel run picks another. Flushed when done (it held only our keys)."""
    base = urlsplit(url)
    owner = uuid.uuid4().hex
    for number in preferred:
        candidate = base._replace(path=f"/{number}").geturl()
        client = redis.Redis.from_url(candidate, socket_connect_timeout=2)
        try:
            if client.dbsize() == 0 and client.set(_REDIS_CLAIM_KEY, owner, nx=True, ex=3600):
                break
        finally:
            client.close()
    else:
        pytest.fail(f"no free Redis database among {preferred} on {_without_password(url)}", pytrace=False)
    try:
        yield candidate
    finally:
        client = redis.Redis.from_url(candidate, socket_connect_timeout=2)
        try:
            if client.get(_REDIS_CLAIM_KEY) == owner.encode():
                client.flushdb()
        finally:
            client.close()


@pytest.fixture
def redis_db_url(redis_server: str) -> Iterator[str]:
    """URL of an otherwise unused database on the local Redis, flushed after."""
    with claimed_redis_db(redis_server) as url:
        yield url


class ThrowawayRedis:
    """A redis-server of this run's own on a free port, with no persistence,
    that a test may stop (a broker outage) and start again on the same port
    without disturbing the Redis other people use."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: ManagedProcess | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_connect_timeout=2, socket_timeout=5)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            f"redis-server:{self.port}",
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--daemonize", "no",
            ],
            env=base_env(),
            log_path=self.workdir / "redis.log",
            cwd=self.workdir,
        )  # fmt: skip
        wait_for(
            lambda: check_redis(self.url()) is None,
            timeout=10,
            what=f"the throwaway Redis on port {self.port}",
            diagnostics=self.process.tail,
        )

    def stop(self) -> None:
        """Stop it the way a crash or an operator would: the process is gone
        and connections are refused until ``start``. Queued messages are lost."""
        if self.process is not None:
            self.process.stop(grace=5)
            self.process = None

    def tail(self) -> str:
        return self.process.tail() if self.process else f"----- redis-server:{self.port} (stopped) -----"


@pytest.fixture
def throwaway_redis(redis_server_binary: str, tmp_path: Path) -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis(redis_server_binary, tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RedisMonitor:
    """Every command a Redis server receives (``MONITOR``) while in use, with
    the arguments unescaped and kombu message bodies decoded, so that a test
    can look for what should never be in the broker."""

    _LINE = re.compile(r"^(?P<time>[\d.]+) \[(?P<db>\d+) (?P<client>[^\]]+)\] (?P<args>.*)$")
    _ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')

    def __init__(self, port: int, log_path: Path):
        self.log_path = log_path
        self.process = ManagedProcess(
            "redis-cli monitor",
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "monitor"],
            env=base_env(),
            log_path=log_path,
        )
        wait_for(lambda: "OK" in self.process.log(), timeout=10, what="redis-cli monitor to connect")

    def stop(self) -> None:
        self.process.stop(grace=2)

    @classmethod
    def _unescape(cls, text: str) -> bytes:
        out = bytearray()
        i = 0
        simple = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                if nxt == "x" and i + 3 < len(text):
                    out.append(int(text[i + 2 : i + 4], 16))
                    i += 4
                    continue
                out += simple.get(nxt, nxt.encode())
                i += 2
                continue
            out += ch.encode()
            i += 1
        return bytes(out)

    def commands(self) -> list[tuple[int, list[bytes]]]:
        """(db number, arguments) of every command seen."""
        seen = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = self._LINE.match(line)
            if match:
                args = [self._unescape(raw) for raw in self._ARG.findall(match["args"])]
                seen.append((int(match["db"]), args))
        return seen

    def decoded_text(self, db: int | None = None) -> str:
        """All arguments as text, plus every kombu body base64-decoded."""
        parts: list[str] = []
        for number, args in self.commands():
            if db is not None and number != db:
                continue
            for arg in args:
                parts.append(arg.decode(errors="replace"))
                parts.extend(_decoded_kombu_bodies(arg))
        return "\n".join(parts)


def _decoded_kombu_bodies(raw: bytes) -> list[str]:
    """A kombu message (possibly wrapped in a [message, exchange, key] list,
    as in the ``unacked`` hash) carries its body base64-encoded."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return []
    found: list[str] = []
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "body" in item and item.get("properties", {}).get("body_encoding") == "base64":
                with contextlib.suppress(ValueError):
                    found.append(base64.b64decode(item["body"]).decode(errors="replace"))
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return found


# --- Static files -----------------------------------------------------------------


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``manage.py collectstatic`` once per run (whitenoise's manifest
    storage needs it with DEBUG off); each stack links its STATIC_ROOT here."""
    var_dir = tmp_path_factory.mktemp("static-var")
    env = production_env(
        var_dir=var_dir,
        site_url="http://127.0.0.1:1",
        database_url=postgres_admin_url(),
        broker_url="redis://127.0.0.1:1/0",
        cache_url="locmemcache://",
        smtp_port=1,
    )
    run_manage("collectstatic", "--noinput", env=env)
    return var_dir / "static"


# --- The app's processes ----------------------------------------------------------

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
            "    r = services.request_submit(submission=services.Submission(\n"
            "        first_name=d['first_name'], last_name=d['last_name'],\n"
            "        date_of_birth=date.fromisoformat(d['date_of_birth']), email=d['email'],\n"
            "        phone=d['phone'], appointment_date=date.fromisoformat(d['appointment_date']),\n"
            "        reason=d['reason']))\n"
            "    print('REFERENCE=' + r.request.reference)\n"
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
            "SELECT e.* FROM requests_app_outboundemail e JOIN requests_app_resetrequest r ON r.id = e.request_id "
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
def running_stack(
    *,
    root: Path,
    database_url: str,
    broker_url: str,
    cache_url: str,
    smtp: SmtpRecorder,
    static_root: Path,
    redis_server: ThrowawayRedis | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    stack = Stack(
        root=root,
        database_url=database_url,
        broker_url=broker_url,
        cache_url=cache_url,
        smtp=smtp,
        static_root=static_root,
        redis_server=redis_server,
        extra_env=extra_env,
    )
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


# --- Patients -----------------------------------------------------------------------


def patient_form(tag: str | None = None, **overrides: str) -> dict[str, str]:
    """A reset-request form that passes every rule, for a visit well past the
    48-hour window, with an email address nobody else in the run uses."""
    tag = tag or uuid.uuid4().hex[:10]
    data = {
        "first_name": "Zephyrine",
        "last_name": "Quillfeather",
        "date_of_birth": "1979-11-07",
        "email": f"patient-{tag}@example.com",
        "phone": "(617) 555-0142",
        "appointment_date": (date.today() - timedelta(days=5)).isoformat(),
        "reason": "link_expired",
        "details": "",
    }
    data.update(overrides)
    return data


def personal_data_of(form: dict[str, str]) -> dict[str, str]:
    """Every way the patient's personal data could show up in text."""
    dob = date.fromisoformat(form["date_of_birth"])
    digits = re.sub(r"\D", "", form["phone"])
    national = digits[-10:]
    return {
        "first name": form["first_name"],
        "last name": form["last_name"],
        "email": form["email"],
        "date of birth (ISO)": dob.isoformat(),
        "date of birth (US)": dob.strftime("%m/%d/%Y"),
        "date of birth (US, short)": f"{dob.month}/{dob.day}/{dob.year}",
        "phone (as typed)": form["phone"],
        "phone (E.164)": f"+1{national}",
        "phone (digits)": national,
        "phone (dashed)": f"{national[:3]}-{national[3:6]}-{national[6:]}",
    }
