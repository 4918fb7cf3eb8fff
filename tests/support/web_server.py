"""gunicorn alone, run as production runs it (``gunicorn.conf.py``, DEBUG
off, every required value set) on a fresh PostgreSQL database and a claimed
database on the local Redis, for tests that need the real server in front of
Django but no Celery worker: what reaches the log, what a client connecting
from another address is taken for.

A module loads it with ``pytest_plugins = ["tests.support.web_server"]`` and
gets ``web_server``, one server for the module; module-level ``WEB_ENV``
(extra environment) chooses its settings. ``WebServer.request`` sends one
raw HTTP request, from any loopback source address (``source="127.0.0.2"``),
and ``WebServer.send_raw`` writes bytes as they are (a malformed request)."""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .polling import free_port, wait_for
from .postgres import fresh_postgres_database
from .processes import BIN, ManagedProcess, production_env
from .redis_servers import claimed_redis_db
from .requirements import check_redis, service_missing, shared_redis_url

# collected_static, and the harness's PostgreSQL and Redis fixtures.
pytest_plugins = ["tests.support.stack"]


@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class WebServer:
    """One gunicorn with the app's own gunicorn.conf.py, bound to 127.0.0.1."""

    def __init__(self, *, root: Path, database_url: str, redis_url: str, static_root: Path, extra_env: dict[str, str]):
        self.root = root
        self.port = free_port()
        var_dir = root / "var"
        var_dir.mkdir(parents=True, exist_ok=True)
        (var_dir / "static").symlink_to(static_root, target_is_directory=True)
        self.env = production_env(
            var_dir=var_dir,
            site_url=f"http://127.0.0.1:{self.port}",
            database_url=database_url,
            broker_url=redis_url,
            cache_url=redis_url,
            smtp_port=1,
            WEB_CONCURRENCY="2",
            **extra_env,
        )
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        self.process = ManagedProcess(
            "gunicorn",
            [
                str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "portal_reset.wsgi:application",
                "--bind", f"127.0.0.1:{self.port}",
            ],
            env=self.env,
            log_path=self.root / "gunicorn.log",
        )  # fmt: skip
        wait_for(self._answers, timeout=40, what="gunicorn to answer /healthz", interval=0.2, diagnostics=self.tail)

    def _answers(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise AssertionError(f"gunicorn exited\n{self.tail()}")
        try:
            return self.request("GET", "/healthz").status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def tail(self) -> str:
        return self.process.tail() if self.process is not None else "gunicorn not started"

    def log(self) -> str:
        return self.process.log() if self.process is not None else ""

    def log_size(self) -> int:
        path = self.root / "gunicorn.log"
        return path.stat().st_size if path.exists() else 0

    def log_since(self, offset: int) -> str:
        with (self.root / "gunicorn.log").open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        source: str = "127.0.0.1",
    ) -> RawResponse:
        """One request, connecting from ``source`` (a loopback address)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20, source_address=(source, 0))
        try:
            conn.request(method, target, body=body, headers={"Host": f"127.0.0.1:{self.port}", **(headers or {})})
            raw = conn.getresponse()
            return RawResponse(status=raw.status, headers=raw.headers, body=raw.read())
        finally:
            conn.close()

    def send_raw(self, data: bytes) -> bytes:
        """Write ``data`` on a new connection and return what comes back."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(data)
            chunks = []
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture(scope="module")
def web_server(
    request: pytest.FixtureRequest,
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    collected_static: Path,
) -> Iterator[WebServer]:
    """gunicorn for the whole module, with the module's ``WEB_ENV``."""
    shared = shared_redis_url()
    if why := check_redis(shared):
        service_missing("Redis", why)
    root = tmp_path_factory.mktemp("web")
    with contextlib.ExitStack() as exits:
        redis_url = exits.enter_context(claimed_redis_db(shared))
        database_url = exits.enter_context(fresh_postgres_database(postgres_server))
        server = WebServer(
            root=root,
            database_url=database_url,
            redis_url=redis_url,
            static_root=collected_static,
            extra_env=dict(getattr(request.module, "WEB_ENV", {})),
        )
        exits.callback(server.stop)
        try:
            server.start()
        except BaseException:
            print(server.tail())
            raise
        yield server
