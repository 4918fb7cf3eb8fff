"""Settings come from the environment; production refuses to start without
the values it needs, naming them. Each case starts a fresh interpreter,
because settings are read once at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 60 + "-not-a-real-key-but-long-and-random-enough-1234567890",
    "ALLOWED_HOSTS": "portal.example.org",
    "SITE_URL": "https://portal.example.org",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "CACHE_URL": "redis://127.0.0.1:6379/1",
    "EMAIL_HOST": "smtp.example.org",
    "DEFAULT_FROM_EMAIL": "resets@example.org",
    "STAFF_NOTIFY_EMAIL": "frontdesk@example.org",
}
REQUIRED = [name for name in PRODUCTION if name != "DEBUG"]


def run_manage(env: dict[str, str], *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in PRODUCTION and key != "VAR_DIR"}
    clean.update(env)
    clean["VAR_DIR"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_starts_with_every_production_value_set(tmp_path):
    result = run_manage(PRODUCTION, "check", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_it_refuses_to_start_in_production_without_a_required_value(missing, tmp_path):
    env = {key: value for key, value in PRODUCTION.items() if key != missing}
    result = run_manage(env, "check", tmp_path=tmp_path)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line
    assert missing in last_line
    # Only the missing value is named.
    assert not any(other in last_line.split(":", 2)[-1] for other in REQUIRED if other != missing)


def test_it_runs_locally_with_no_configuration_at_all(tmp_path):
    result = run_manage({"DEBUG": "1"}, "check", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    # The generated secret key is kept for the next start.
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50


def test_it_passes_the_deploy_checks_with_production_settings(tmp_path):
    result = run_manage(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("PRACTICE_TIME_ZONE", "Mars/Olympus_Mons"), ("RESET_SLA_HOURS", "0"), ("ACCESS_LINK_HOURS", "-4")],
)
def test_it_rejects_a_bad_value_naming_it(name, value, tmp_path):
    result = run_manage({"DEBUG": "1", name: value}, "check", tmp_path=tmp_path)
    assert result.returncode != 0
    assert name in result.stderr.strip().splitlines()[-1]


def test_it_puts_a_redis_cache_url_on_django_redis(tmp_path):
    code = "from django.conf import settings; print(settings.CACHES['default']['BACKEND'])"
    result = run_manage(PRODUCTION, "shell", "-c", code, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "django_redis.cache.RedisCache"
