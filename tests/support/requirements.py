"""Whether PostgreSQL and Redis answer; a test that needs a missing one
skips with the reason, or fails when ``REQUIRE_SERVICES=1`` (CI)."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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
        return f"cannot connect to {without_password(url)}: {exc}".strip()
    return None


def check_redis(url: str) -> str | None:
    """None when Redis answers at ``url``, else why not."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"cannot connect to {without_password(url)}: {exc}"
    finally:
        client.close()
    return None


def without_password(url: str) -> str:
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
