"""The app's processes as the tests and the bench run them: each in its own
process group with its output in a file, in a clean production-like
environment; ``manage.py`` commands in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import REPO
from .http_client import Browser as HttpClient
from .polling import free_port, wait_for

BIN = Path(sys.executable).parent  # the venv's bin/: celery, gunicorn
MANAGE = REPO / "manage.py"
STAFF_NOTIFY_EMAIL = "staff-inbox@practice.example"
DEFAULT_FROM_EMAIL = "portal-reset@practice.example"


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
    """What a production deployment sets (docs/configuration.md), pointed at
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


def offline_production_env(
    *, var_dir: Path, database_url: str, site_url: str = "http://127.0.0.1:1", **extra: str
) -> dict[str, str]:
    """production_env on ``database_url`` alone: no broker answers (a publish
    is logged and the emails stay in the outbox for the sweeper:
    outbox/publish.py), the cache is the process's own memory, and no SMTP
    server listens."""
    return production_env(
        var_dir=var_dir,
        site_url=site_url,
        database_url=database_url,
        broker_url="redis://127.0.0.1:1/0",
        cache_url="locmemcache://",
        smtp_port=1,
        **extra,
    )


def sqlite_site_env(root: Path, **extra: str) -> tuple[dict[str, str], int]:
    """A production environment for a throwaway site under ``root``: SQLite
    and VAR_DIR in ``root``/var, the filesystem broker, the local-memory
    cache, an SMTP port nothing listens on (no worker runs to send
    anything), quiet logs; and the free port its SITE_URL names."""
    var_dir = root / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = production_env(
        var_dir=var_dir,
        site_url=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{var_dir / 'db.sqlite3'}",
        broker_url="filesystem://",
        cache_url="locmemcache://",
        smtp_port=free_port(),
        **{"LOG_LEVEL": "WARNING", **extra},
    )
    return env, port


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


def manage_json(env: dict[str, str], code: str) -> Any:
    """Run ``code`` in ``manage.py shell`` with ``env``; it prints one JSON
    value, returned here."""
    result = run_manage("shell", "-c", code, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def create_staff_member(env: dict[str, str], username: str, *, first_name: str, last_name: str) -> str:
    """A staff member in the least-privilege group, made with the app's own
    command (setup_staff_group) in the site's database; returns the password."""
    password = secrets.token_urlsafe(18)
    code = (
        "import os\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.core.management import call_command\n"
        f"get_user_model().objects.create_user(username={username!r}, first_name={first_name!r},\n"
        f"    last_name={last_name!r}, password=os.environ['STAFF_PASSWORD'])\n"
        f"call_command('setup_staff_group', user=[{username!r}])\n"
    )
    run_manage("shell", "-c", code, env={**env, "STAFF_PASSWORD": password})
    return password


@contextlib.contextmanager
def serving_gunicorn(
    *, env: dict[str, str], root: Path, port: int, config: bool = False, probe: str = "/"
) -> Iterator[str]:
    """gunicorn serving the app on 127.0.0.1:``port`` with ``env`` — one
    worker with four threads, or the app's own gunicorn.conf.py with
    ``config`` — until it answers ``probe``; yields its base URL and stops
    it on the way out. Its log is ``root``/gunicorn.log."""
    url = f"http://127.0.0.1:{port}"
    if config:
        options = ["-c", "gunicorn.conf.py"]
    else:
        options = ["--workers", "1", "--worker-class", "gthread", "--threads", "4"]
        options += ["--timeout", "30", "--graceful-timeout", "2"]
    web = ManagedProcess(
        "gunicorn",
        [str(BIN / "gunicorn"), *options, "portal_reset.wsgi:application", "--bind", f"127.0.0.1:{port}"],
        env=env,
        log_path=root / "gunicorn.log",
    )

    def answers() -> bool:
        if not web.alive():
            raise AssertionError(f"gunicorn exited\n{web.tail()}")
        try:
            return HttpClient(url, timeout=3).get(probe).status == 200
        except OSError:
            return False

    try:
        wait_for(answers, timeout=40, what=f"gunicorn to answer {probe}", interval=0.1, diagnostics=web.tail)
        yield url
    finally:
        web.stop(grace=3)
