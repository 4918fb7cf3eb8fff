"""The production topology: docker-compose.yml, the Dockerfile, .env.example and
gunicorn.conf.py. No Docker engine runs here, so these tests read the files
and run what they name (the WSGI and Celery apps, the build's collectstatic,
production settings from .env.example, gunicorn with its config) as plain
processes."""

from __future__ import annotations

import gc
import http.client
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("web", "worker", "beat")
ALL_SERVICES = (*APP_SERVICES, "db", "redis", "mail")


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def command_words(name: str) -> list[str]:
    command = service(name)["command"]
    if isinstance(command, list):
        if command[:2] == ["sh", "-c"]:
            return shlex.split(command[2])
        return command
    return shlex.split(command)


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            values[name.strip()] = value
    return values


def settings_variables() -> set[str]:
    """Every environment variable portal_reset/settings.py reads."""
    source = (ROOT / "portal_reset" / "settings.py").read_text()
    pattern = r'(?:env\.\w+|Env\(\)\.\w+|_required|_positive_int)\(\s*"([A-Z][A-Z0-9_]*)"'
    return set(re.findall(pattern, source))


def required_in_production() -> set[str]:
    source = (ROOT / "portal_reset" / "settings.py").read_text()
    return set(re.findall(r'_required\(\s*"([A-Z][A-Z0-9_]*)"', source)) | set(
        re.findall(r'_missing\.append\("([A-Z][A-Z0-9_]*)"\)', source)
    )


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, args = line.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """A process environment with none of the test run's settings in it."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", **values}


# --- docker-compose.yml ------------------------------------------------------


def test_it_defines_the_six_services():
    assert set(compose()["services"]) == set(ALL_SERVICES)


def test_it_builds_web_worker_and_beat_from_one_image():
    builds = {json.dumps(service(name).get("build"), sort_keys=True) for name in APP_SERVICES}
    images = {service(name).get("image") for name in APP_SERVICES}
    assert builds == {json.dumps(".")}
    assert len(images) == 1
    assert None not in images
    assert (ROOT / "Dockerfile").exists()


def test_it_gives_every_service_a_healthcheck():
    for name in ALL_SERVICES:
        check = service(name).get("healthcheck")
        assert check, name
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_it_checks_each_service_with_its_own_probe():
    def probe(name: str) -> str:
        return " ".join(service(name)["healthcheck"]["test"][1:])

    assert "/healthz" in probe("web")
    assert "pg_isready" in probe("db")
    assert "redis-cli ping" in probe("redis")
    assert "readyz" in probe("mail")
    assert "beat" in probe("beat")
    # $$ reaches the shell as $; a single $ would be emptied by compose.
    assert "inspect ping -d celery@$$HOSTNAME" in probe("worker")


def test_it_asks_healthz_with_an_allowed_host_over_the_proxy_scheme():
    script = service("web")["healthcheck"]["test"][-1]
    assert "ALLOWED_HOSTS" in script
    assert '"X-Forwarded-Proto": "https"' in script
    compile(script, "web healthcheck", "exec")


def test_it_keeps_database_and_broker_data_in_named_volumes():
    declared = set(compose()["volumes"])
    mounts = {name: dict(volume.split(":", 1) for volume in service(name)["volumes"]) for name in ("db", "redis")}
    assert mounts["db"].get("postgres-data") == "/var/lib/postgresql/data"
    assert mounts["redis"].get("redis-data") == "/data"
    assert {"postgres-data", "redis-data"} <= declared


def test_it_starts_the_app_only_once_its_servers_are_healthy():
    for name in APP_SERVICES:
        depends = service(name)["depends_on"]
        for server in ("db", "redis"):
            assert depends[server]["condition"] == "service_healthy", (name, server)
    for name in ("worker", "beat"):
        # The web service runs the migrations before it turns healthy.
        assert service(name)["depends_on"]["web"]["condition"] == "service_healthy"


def test_it_publishes_ports_on_localhost_only():
    for name, spec in compose()["services"].items():
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_it_serves_a_wsgi_module_that_exists():
    words = command_words("web")
    module, _, attribute = words[-1].partition(":")
    wsgi = __import__(module, fromlist=["_"])
    assert callable(getattr(wsgi, attribute or "application"))


def test_it_runs_celery_from_the_project_app():
    from celery import Celery
    from celery.app.utils import find_app

    from portal_reset.celery import app

    for name, subcommand in (("worker", "worker"), ("beat", "beat")):
        words = command_words(name)
        assert words[:2] == ["celery", "-A"], name
        found = find_app(words[2])
        assert isinstance(found, Celery)
        assert found is app
        assert words[3] == subcommand


def test_it_gives_the_worker_time_to_finish_its_task_on_shutdown():
    from django.conf import settings

    grace = service("worker")["stop_grace_period"]
    assert grace.endswith("s")
    assert int(grace[:-1]) > settings.CELERY_TASK_TIME_LIMIT


def test_it_gives_gunicorn_time_to_finish_requests_on_shutdown():
    config: dict[str, Any] = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), config)  # noqa: S102 - our own file
    assert int(service("web")["stop_grace_period"][:-1]) > config["graceful_timeout"]


def test_it_finds_every_compose_variable_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    assert used
    assert used <= set(env_example())


# --- .env.example ------------------------------------------------------------


def test_it_lists_every_setting_in_env_example():
    example = env_example()
    missing = settings_variables() - set(example) - {"VAR_DIR", "STATIC_ROOT"}
    assert not missing


def test_it_fills_in_every_required_production_value_but_the_secrets():
    example = env_example()
    required = required_in_production()
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "SITE_URL", "DATABASE_URL", "CELERY_BROKER_URL"} <= required
    for name in required:
        assert name in example, name
        if name != "SECRET_KEY":
            assert example[name], name
    assert example["SECRET_KEY"] == ""
    assert example["POSTGRES_PASSWORD"] == ""
    assert example["DEBUG"] == "0"


def test_it_passes_the_deploy_check_with_the_example_values(tmp_path):
    values = {**env_example(), "SECRET_KEY": secrets.token_urlsafe(50), "VAR_DIR": str(tmp_path)}
    env = clean_env(tmp_path, **values)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_refuses_to_start_until_the_secret_key_is_set(tmp_path):
    env = clean_env(tmp_path, **env_example(), VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_it_documents_every_setting_in_the_configuration_guide():
    guide = (ROOT / "docs" / "configuration.md").read_text()
    undocumented = {name for name in settings_variables() if f"`{name}`" not in guide}
    assert not undocumented


# --- Dockerfile --------------------------------------------------------------


def test_it_runs_as_a_user_who_is_not_root():
    users = [args for keyword, args in dockerfile() if keyword == "USER"]
    assert users
    assert users[-1] not in ("root", "0")


def test_it_collects_static_files_at_build_time_as_production_would(tmp_path):
    """The build's collectstatic step, run as written: with DEBUG off, so the
    manifest that production's storage needs is written."""
    run = next(args for keyword, args in dockerfile() if keyword == "RUN" and "collectstatic" in args)
    words = shlex.split(run)
    assignments = dict(word.split("=", 1) for word in words[: words.index("python")])
    assert assignments["DEBUG"] == "0"
    assert required_in_production() <= set(assignments)
    env = clean_env(tmp_path, **assignments, VAR_DIR=str(tmp_path), STATIC_ROOT=str(tmp_path / "static"))
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())
    assert "vendor/bootstrap/bootstrap.min.css" in manifest["paths"]


def test_it_keeps_local_state_and_secrets_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", "var", ".git"} <= ignored


# --- gunicorn.conf.py --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_gunicorn_hides_what_the_master_loaded_from_the_workers_garbage_collector():
    config: dict[str, Any] = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), config)  # noqa: S102 - our own file
    gc.unfreeze()
    try:
        config["pre_fork"](None, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_it_never_writes_a_status_token_to_the_access_log(tmp_path):
    port = _free_port()
    env = clean_env(tmp_path, DEBUG="1", LOG_FORMAT="json", VAR_DIR=str(tmp_path), PORT=str(port), WEB_CONCURRENCY="1")
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "portal_reset.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(port, "/healthz") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        secret = "QZQZSECRETQZQZ"
        referer = {"Referer": f"http://127.0.0.1:{port}/status/{secret}/"}
        assert _get(port, f"/status/ABCD2345{secret}/?q={secret}", referer) == 404
        assert _get(port, f"/%73tatus/ABCD2345{secret}/") == 404
        assert _get(port, "/healthz", {"X-Request-ID": "req-0123456789"}) == 200
    finally:
        server.terminate()
        server.wait(timeout=30)

    output = log.read_text()
    assert secret not in output
    access = [json.loads(line) for line in output.splitlines() if '"gunicorn.access"' in line]
    assert [(line["path"], line["status"]) for line in access][-3:] == [
        ("/status/…/", 404),
        ("/status/…/", 404),
        ("/healthz", 200),
    ]
    assert access[-1]["request_id"] == "req-0123456789"
    assert "127.0.0.1" not in json.dumps(access)
