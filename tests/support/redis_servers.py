"""Redis for the tests: a claimed database on the shared server
(``redis_db_url``), a redis-server of this run's own that a test may stop
(``throwaway_redis``), and a MONITOR of every command a server receives."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from .polling import free_port, wait_for
from .processes import ManagedProcess, base_env
from .requirements import check_redis, without_password

pytest_plugins = ["tests.support.requirements"]  # redis_server, redis_server_binary

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
        pytest.fail(f"no free Redis database among {preferred} on {without_password(url)}", pytrace=False)
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
