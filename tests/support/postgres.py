"""A fresh, migrated PostgreSQL database: per test (``postgres_database``)
or wherever a context manager fits (``fresh_postgres_database``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from .processes import offline_production_env, run_manage

pytest_plugins = ["tests.support.requirements"]  # postgres_server


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
        env = migrate_env or offline_production_env(var_dir=Path("/nonexistent"), database_url=url)
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
    env = offline_production_env(var_dir=tmp_path / "var", database_url="")
    with fresh_postgres_database(postgres_server, migrate_env=env) as url:
        yield url
