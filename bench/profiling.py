"""What the in-process profilers (profile_post.py, profile_email.py) share:
services of their own (a Redis and a fresh PostgreSQL database, dropped
after), the production settings pointed at them, another process's CPU from
/proc, and a profile's time by part."""

from __future__ import annotations

import contextlib
import os
import pstats
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.processes import production_env
from tests.support.redis_servers import ThrowawayRedis

from .stack import REPO, create_database, drop_database, postgres_admin_url


@contextlib.contextmanager
def throwaway_services(root: Path, *, smtp_port: int = 1, **settings: str) -> Iterator[tuple[dict[str, str], int]]:
    """The environment of a production process (DEBUG off, bench.settings)
    on a Redis of its own (broker and cache) and a fresh, migrated
    PostgreSQL database, plus ``settings``; and the Redis's port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("needs redis-server on PATH")
    redis_server = ThrowawayRedis(binary, root / "redis")
    redis_server.start()
    admin_url = postgres_admin_url()
    name, url = create_database(admin_url)
    try:
        env = production_env(
            var_dir=root,
            site_url="http://127.0.0.1:8000",
            database_url=url,
            broker_url=redis_server.url(0),
            cache_url=redis_server.url(1),
            smtp_port=smtp_port,
            DJANGO_SETTINGS_MODULE="bench.settings",
            LOG_LEVEL=os.environ.get("PROFILE_LOG_LEVEL", "INFO"),
            **settings,
        )
        manage(env, "migrate")
        yield env, redis_server.port
    finally:
        drop_database(admin_url, name)
        redis_server.stop()


def manage(env: dict[str, str], command: str) -> None:
    subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", command, "--no-input"], cwd=REPO, env=env, check=True, capture_output=True
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_by_part(stats: pstats.Stats, parts: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Seconds spent in each part: the cumulative time of its function
    (file suffix, function name), its outermost calls."""
    seconds: dict[str, float] = {}
    for (filename, _line, function), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for part, (suffix, name) in parts.items():
            if function == name and filename.endswith(suffix):
                seconds[part] = max(seconds.get(part, 0.0), ct)
    return seconds
