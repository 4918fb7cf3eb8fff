"""The Celery worker's pool size comes from WORKER_CONCURRENCY, twice the
cores by default (a batch of emails waits on the SMTP server and the
database as much as it computes). Each case starts a fresh interpreter,
because settings are read once at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What the worker's process reads: Celery's own configuration, from Django's settings.
READ = "from portal_reset.celery import app; print(app.conf.worker_concurrency)"


def worker_concurrency(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in ("WORKER_CONCURRENCY", "VAR_DIR")}
    clean.update({"DEBUG": "1", "VAR_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {READ}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "portal_reset.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("given", [None, "", "  "])
def test_the_worker_runs_twice_as_many_processes_as_cores_by_default(tmp_path, given):
    # .env.example leaves it empty.
    result = worker_concurrency(tmp_path, **({} if given is None else {"WORKER_CONCURRENCY": given}))

    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip().splitlines()[-1]) == 2 * (os.cpu_count() or 1)


def test_the_worker_runs_as_many_processes_as_worker_concurrency_says(tmp_path):
    result = worker_concurrency(tmp_path, WORKER_CONCURRENCY="3")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "3"


@pytest.mark.parametrize("value", ["0", "-2"])
def test_it_refuses_a_worker_concurrency_that_is_not_a_positive_number(tmp_path, value):
    result = worker_concurrency(tmp_path, WORKER_CONCURRENCY=value)

    assert result.returncode != 0
    assert "WORKER_CONCURRENCY must be a positive whole number" in result.stderr
