"""No query string in any log line — gunicorn's access and error logs and
Django's own request logging — since an admin search's ``?q=`` may be a
patient's email; and the local run's state folder (SQLite file, .eml mail,
secret key) readable by its owner only."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gunicorn.config import Config

from .support import REPO
from .support.polling import free_port, wait_for
from .support.processes import base_env

pytest_plugins = ["tests.support.web_server"]

SECRET = "secret@example.com"
LEAKS = [SECRET, "secret%40example.com", "?q=", "q=secret"]
CSRF_COOKIE = "a" * 32
# Debug lines too: nothing at any level may carry a query string.
WEB_ENV = {"LOG_LEVEL": "DEBUG"}


def assert_no_query_string(text: str) -> None:
    leaked = [line for line in text.splitlines() if any(leak in line for leak in LEAKS)]
    assert not leaked, "\n".join(leaked)


# --- gunicorn -------------------------------------------------------------------


@pytest.mark.services
def test_gunicorn_logs_no_query_string_on_any_path(web_server):
    offset = web_server.log_size()

    search = web_server.request("GET", f"/admin/requests_app/resetrequest/?q={SECRET}")
    missing = web_server.request("GET", f"/no-such-page/?q={SECRET}")
    encoded = web_server.request("GET", "/no-such-page/?q=secret%40example.com")
    bad_charset = web_server.request(
        "POST",
        f"/reset/?q={SECRET}",
        body=b"first_name=Jos%E9",
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=latin-1",
            "Cookie": f"csrftoken={CSRF_COOKIE}",
        },
    )
    # A request target gunicorn itself refuses (a DEL in it): its warning quotes the target.
    refused = web_server.send_raw(f"GET /reset/?q={SECRET}\x7f HTTP/1.1\r\nHost: x\r\n\r\n".encode())

    assert (search.status, missing.status, encoded.status, bad_charset.status) == (302, 404, 404, 400)
    assert refused.startswith(b"HTTP/1.1 400")
    logged = wait_for(
        lambda: (
            (text := web_server.log_since(offset)).count('"gunicorn.access"') >= 4
            and "Invalid request" in text
            and text
        ),
        timeout=10,
        what="four access log lines and gunicorn's warning",
    )
    assert '"path": "/admin/requests_app/resetrequest/", "status": 302' in logged
    assert "Invalid HTTP request line" in logged
    assert_no_query_string(logged)


def gunicorn_config() -> dict[str, object]:
    config: dict[str, object] = {}
    exec((REPO / "gunicorn.conf.py").read_text(), config)  # noqa: S102 - our own file
    return config


@pytest.mark.parametrize("log_format", ["json", "plain"])
def test_gunicorn_s_error_line_and_its_traceback_carry_no_query_string(log_format, monkeypatch, tmp_path):
    """gunicorn logs "Error handling request <method> <uri>" with the full
    URI, and the traceback of whatever escaped the app."""
    monkeypatch.setenv("LOG_FORMAT", log_format)
    config = gunicorn_config()
    cfg = Config()
    cfg.set("errorlog", str(tmp_path / "error.log"))
    cfg.set("loglevel", "info")
    logger = config["PrivacyLogger"](cfg)  # type: ignore[operator]

    try:
        raise RuntimeError(f"failed on /admin/requests_app/resetrequest/?q={SECRET}")
    except RuntimeError:
        logger.exception("Error handling request %s %s", "GET", f"/admin/requests_app/resetrequest/?q={SECRET}")
    logging.shutdown()

    logged = (tmp_path / "error.log").read_text()
    assert "Error handling request GET /admin/requests_app/resetrequest/" in logged
    assert "RuntimeError: failed on /admin/requests_app/resetrequest/" in logged
    assert_no_query_string(logged)


# --- Django ---------------------------------------------------------------------


def test_the_development_server_logs_no_query_string(tmp_path):
    """``make run``'s runserver logs every 4xx request line through Django's
    logging (django.server)."""
    port = free_port()
    env = base_env(DEBUG="1", VAR_DIR=str(tmp_path / "var"), LOG_FORMAT="plain")
    log = tmp_path / "runserver.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def not_found() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page/?q={SECRET}", timeout=5)
            except urllib.error.HTTPError as exc:
                return exc.code == 404
            except OSError:
                return False
            return False

        wait_for(not_found, timeout=30, what="runserver to answer 404", interval=0.2, diagnostics=log.read_text)
        wait_for(lambda: "/no-such-page/" in log.read_text(), timeout=10, what="the 404 in runserver's log")
    finally:
        server.terminate()
        server.wait(timeout=30)
    time.sleep(0.1)

    logged = log.read_text()
    assert '"GET /no-such-page/ HTTP/1.1" 404' in logged
    assert_no_query_string(logged)


# --- The local run's files ------------------------------------------------------


def manage_check(var_dir: Path) -> None:
    env = base_env(DEBUG="1", VAR_DIR=str(var_dir))
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0o022,  # the usual one, which leaves new folders readable by everyone
    )
    assert result.returncode == 0, result.stdout + result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_it_makes_a_fresh_var_dir_readable_by_its_owner_only(tmp_path):
    var_dir = tmp_path / "var"

    manage_check(var_dir)

    assert mode(var_dir) == 0o700
    assert mode(var_dir / "secret_key") == 0o600
    assert (var_dir / "broker" / "queue").is_dir()


def test_it_tightens_an_existing_var_dir_of_its_owner(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir(mode=0o755)
    var_dir.chmod(0o755)

    manage_check(var_dir)

    assert mode(var_dir) == 0o700
