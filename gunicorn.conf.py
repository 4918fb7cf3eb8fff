"""Gunicorn settings for the web container (Dockerfile, docker-compose.yml).

Read from the environment: PORT (default 8000), WEB_CONCURRENCY (worker
processes, default 2), TRUSTED_PROXIES (the TLS proxy's addresses or CIDR
networks, as Django's settings read it; default 127.0.0.1,::1), LOG_LEVEL,
and LOG_FORMAT / DEBUG as Django's settings read them (JSON lines unless
LOG_FORMAT=plain or DEBUG is on). Anything else can be passed in
GUNICORN_CMD_ARGS.

No log line holds what a URL or a header may carry. A status link's path is
/status/<token>/ and the token is the key to that request's page, so every
path under /status/ is written as /status/…/, in the access log and in the
error log. Query strings (an admin search's ?q= may be a patient's email)
are in neither: the access log leaves them out, and every error-log line
(gunicorn's "Error handling request <uri>", its "Invalid request" warnings
quoting a request line, a traceback) loses them. The Referer, cookies and
the client's address are not logged at all.
"""

from __future__ import annotations

import datetime
import gc
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
# The app (Django, its URL configuration and every view module:
# portal_reset/wsgi.py) is loaded once, in the master, and each worker is a
# fork of it. Loaded in each worker instead, every recycled worker spent
# about a second of CPU starting up: a millisecond per request at 1,000
# requests a worker. The app opens no connection while it loads, so no
# worker shares one with the master. A code change takes a restart, not a
# HUP (a new container does that).
preload_app = True


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, before each worker is forked: what the master loaded
    (the app, above) is moved out of the garbage collector's generations
    (gc.freeze), as Python's documentation advises before a fork. A worker's
    collections then never walk those long-lived objects, which cost it
    about 2 % of a submission's instructions (bench.instructions), and never
    write to their pages, which the worker would otherwise copy."""
    gc.freeze()


# The workers' heartbeat files on a tmpfs: on Docker's overlay filesystem a
# slow disk can make the arbiter kill a healthy worker as hung.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# The peers whose X-Forwarded-Proto gunicorn believes (its wsgi.url_scheme):
# the same list Django's TrustedProxyMiddleware believes it and
# CLIENT_IP_HEADER from, so the two never disagree. gunicorn validates
# each entry as Django's settings do (strict CIDR). FORWARDED_ALLOW_IPS is
# not read: "*" there would let any client say it came over HTTPS.
forwarded_allow_ips = os.environ.get("TRUSTED_PROXIES", "").strip() or "127.0.0.1,::1"
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
# A path-like run of characters, then its query string (as
# portal_reset.log_filters.strip_query_strings, for Django's own lines).
_QUERY_IN_TEXT = re.compile(r"(/[^\s?#\"']*)\?[^\s\"']*")


def mask_path(path: str) -> str:
    """The path as it may be logged: percent-decoded first (Django routes the
    decoded path, so /%73tatus/<token>/ reaches the status page too), then
    everything after /status/ replaced by an ellipsis, then re-encoded."""
    decoded = unquote(path)
    start = decoded.lower().find("/status/")
    if start == -1:
        return quote(decoded, safe=_PATH_SAFE)
    return quote(decoded[: start + len("/status/")], safe=_PATH_SAFE) + "…/"


def _private_text(text: str) -> str:
    """Error-log text without query strings or status tokens (looked for in
    the percent-decoded text, as mask_path does, so that /%73tatus/ is
    caught too)."""
    text = _QUERY_IN_TEXT.sub(r"\1", text)
    decoded = unquote(text)
    if "/status/" in decoded.lower():
        return _STATUS_IN_TEXT.sub(r"\1…/", decoded)
    return text


class _PrivateErrorLog(logging.Filter):
    """For gunicorn's error log, whose "Error handling request <uri>" line,
    "Invalid request" warnings (quoting the request line) and the traceback
    of whatever escaped the app may name a path and its query string. The
    traceback is formatted here, once, so that both formatters write the
    cleaned text (exc_text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        private = _private_text(message)
        if private != message:
            record.msg, record.args = private, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _private_text(record.exc_text)
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
        if record.exc_text or record.exc_info:
            line["exc_info"] = record.exc_text or self.formatException(record.exc_info)
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
        if not any(isinstance(f, _PrivateErrorLog) for f in self.error_log.filters):
            self.error_log.addFilter(_PrivateErrorLog())
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
