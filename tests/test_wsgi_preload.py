"""gunicorn loads the app once, in its master, and forks its workers from
it (gunicorn.conf.py: preload_app). That is safe only while loading the app
opens no connection a worker would then share with the master, and it pays
only if loading takes what a worker's first request would otherwise: the
URL configuration and the view modules it imports."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

from gunicorn.config import Config

from .support.processes import REPO, production_env

# What a process that loaded the app holds: its sockets (none may be open),
# the view modules loaded, and whether the provider-only modules stayed out.
LOAD_AND_LOOK = """
import json, os, sys
import portal_reset.wsgi
def target(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the descriptor listdir itself had open
        return ""
print(json.dumps({
    "sockets": [t for t in map(target, os.listdir("/proc/self/fd")) if t.startswith("socket:")],
    "modules": sorted(m for m in sys.modules if m.startswith(("requests_app.views", "boto3", "anymail.webhooks"))),
}))
"""


def load_the_app(tmp_path: Path) -> dict[str, list[str]]:
    # Nothing listens on port 9 (discard): a connection attempt would fail
    # or leave a socket, and either shows.
    env = production_env(
        var_dir=tmp_path,
        site_url="https://portal.example.org",
        database_url="postgres://portal@127.0.0.1:9/portal",
        broker_url="redis://127.0.0.1:9/0",
        cache_url="redis://127.0.0.1:9/1",
        smtp_port=9,
        LOG_LEVEL="WARNING",
    )
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_LOOK], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loading_the_app_opens_no_connection_and_loads_the_views(tmp_path: Path) -> None:
    loaded = load_the_app(tmp_path)
    assert loaded["sockets"] == []
    assert "requests_app.views.reset" in loaded["modules"]
    assert "requests_app.views.status" in loaded["modules"]


def test_a_provider_s_webhook_module_is_loaded_only_where_it_is_used(tmp_path: Path) -> None:
    # EMAIL_PROVIDER unset: plain SMTP; Amazon SES's webhook (and boto3)
    # would cost every worker a fifth of a second and some 20 MB.
    loaded = load_the_app(tmp_path)
    providers = ("amazon_ses", "postmark", "mailgun", "sendgrid", "brevo")
    assert "anymail.webhooks.base" in loaded["modules"]
    assert not [name for name in loaded["modules"] if name.startswith("boto3") or name.endswith(providers)]


def test_gunicorn_forks_its_workers_from_a_master_that_loaded_the_app() -> None:
    # Read as gunicorn reads it: a Python file whose names are its settings.
    settings = runpy.run_path(str(REPO / "gunicorn.conf.py"))
    config = Config()
    for name in ("preload_app", "max_requests"):
        config.set(name, settings[name])
    assert config.preload_app is True
    assert config.max_requests == 1000
