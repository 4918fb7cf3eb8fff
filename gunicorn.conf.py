"""Gunicorn settings for the web container (Dockerfile, docker-compose.yml).

Read from the environment: PORT (default 8000), WEB_CONCURRENCY (worker
processes, default 2), FORWARDED_ALLOW_IPS (addresses whose X-Forwarded-*
headers gunicorn trusts; default 127.0.0.1,::1), LOG_LEVEL, and LOG_FORMAT /
DEBUG as Django's settings read them (JSON lines unless LOG_FORMAT=plain or
DEBUG is on). Anything else can be passed in GUNICORN_CMD_ARGS.

The access log never holds what a URL or a header may carry: a status link's
path is /status/<token>/ and the token is the key to that request's page, so
every path under /status/ is written as /status/…/; query strings, the
Referer, cookies and the client's address are not logged at all.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from gunicorn import glogging


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}.") from None
    if value <= 0:
        raise SystemExit(f"{name} must be a positive whole number, got {value}.")
    return value


bind = f"0.0.0.0:{_positive_int('PORT', 8000)}"
workers = _positive_int("WEB_CONCURRENCY", 2)
# Requests are short (SMTP happens in the Celery worker, never in a request),
# so plain sync workers behind a buffering TLS proxy fit.
worker_class = "sync"
timeout = 30
# Shorter than the web service's stop_grace_period in docker-compose.yml
# (40 s), so requests in flight finish before Docker sends SIGKILL.
graceful_timeout = 25
keepalive = 5
# Recycle workers now and then so that a slow leak cannot grow unbounded.
max_requests = 1000
max_requests_jitter = 100
# The workers' heartbeat files on a tmpfs: on Docker's overlay filesystem a
# slow disk can make the arbiter kill a healthy worker as hung.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# The gunicornc control socket is not used; no socket, nothing to secure.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# The same two shapes as Django's own logs (settings.LOG_FORMAT): one JSON
# object a line in production, plain text when LOG_FORMAT=plain. Every atom
# is JSON-escaped by PrivacyLogger.atoms(), so the JSON line stays valid.
_DEBUG = os.environ.get("DEBUG", "").strip().lower() in ("1", "true", "on", "ok", "y", "yes")
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain" if _DEBUG else "json").strip().lower()
if LOG_FORMAT == "plain":
    access_log_format = '%(time)s INFO gunicorn.access [%(request_id)s] "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
else:
    access_log_format = (
        '{"time": "%(time)s", "level": "INFO", "logger": "gunicorn.access", "request_id": "%(request_id)s", '
        '"message": "%(r)s %(s)s", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, "bytes": "%(b)s", '
        '"duration_ms": %(M)s, "user_agent": "%(a)s"}'
    )

# Kept as they are when a decoded, masked path is written back; everything
# else (control characters included) is percent-encoded, so a crafted path
# cannot forge log lines.
_PATH_SAFE = "/-._~!$&'()*+,;=:@"
_STATUS_IN_TEXT = re.compile(r"(/status/)\S*", re.IGNORECASE)


def mask_path(path: str) -> str:
    """The path as it may be logged: percent-decoded first (Django routes the
    decoded path, so /%73tatus/<token>/ reaches the status page too), then
    everything after /status/ replaced by an ellipsis, then re-encoded."""
    decoded = unquote(path)
    start = decoded.lower().find("/status/")
    if start == -1:
        return quote(decoded, safe=_PATH_SAFE)
    return quote(decoded[: start + len("/status/")], safe=_PATH_SAFE) + "…/"


class _MaskStatusTokens(logging.Filter):
    """For gunicorn's error log, whose "Error handling request <uri>" line
    (and the debug line of every request) names the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        decoded = unquote(record.getMessage())
        if "/status/" in decoded.lower():
            record.msg = _STATUS_IN_TEXT.sub(r"\1…/", decoded)
            record.args = ()
        return True


def _json_text(value: Any) -> str:
    """A value as the inside of a JSON string."""
    return json.dumps(str(value), ensure_ascii=False)[1:-1]


def _iso_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class _JsonFormatter(logging.Formatter):
    """gunicorn.error records as JSON lines with Django's keys."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class _Atoms(glogging.SafeAtoms):
    """SafeAtoms without its quote escaping: the atoms are JSON-escaped."""

    def __init__(self, atoms: dict[str, Any]) -> None:
        dict.__init__(self, atoms)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class PrivacyLogger(glogging.Logger):
    """Gunicorn's logger with an access log that names no secret and no
    personal data, whatever access_log_format asks for: only the atoms built
    here exist, and any other prints "-"."""

    atoms_wrapper_class = _Atoms

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if not any(isinstance(f, _MaskStatusTokens) for f in self.error_log.filters):
            self.error_log.addFilter(_MaskStatusTokens())
        if LOG_FORMAT != "plain":
            for handler in self.error_log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(_JsonFormatter())

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        full = super().atoms(resp, req, environ, request_time)
        # PATH_INFO is missing when gunicorn itself answers an error.
        path = mask_path(environ.get("PATH_INFO") or urlsplit(environ.get("RAW_URI") or "-").path or "-")
        # The id Django's RequestIdMiddleware answered with (it takes the
        # proxy's X-Request-ID when valid), so access and app lines match.
        request_id = str(full.get("{x-request-id}o") or full.get("{x-request-id}i") or "-")
        atoms: dict[str, Any] = {
            "time": _iso_now(),
            "request_id": request_id if _REQUEST_ID.match(request_id) else "-",
            "r": f"{full['m']} {path} {full['H']}",
            "U": path,
        }
        atoms.update({key: full[key] for key in ("t", "m", "H", "b", "a", "p")})
        atoms = {key: _json_text(value) for key, value in atoms.items()}
        # Numbers stay numbers.
        atoms.update({key: full[key] for key in ("T", "D", "M")})
        status = str(full["s"])
        atoms["s"] = int(status) if status.isdigit() else 0
        # Not logged: h (client address), u (user), q (query string),
        # f (Referer), any header, cookie or environ value.
        atoms.update({"h": "-", "l": "-", "u": "-", "q": "", "f": "-"})
        return atoms


logger_class = PrivacyLogger
