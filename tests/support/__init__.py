"""The test harness: helpers and fixtures, apart from the tests themselves.

Most tests run in-process (see tests/conftest.py). The tests marked
``services`` use real services: PostgreSQL, Redis, an SMTP server, and the
app's own processes (gunicorn, Celery worker, beat). A test module loads the
fixtures it needs with ``pytest_plugins``, e.g. ``["tests.support.stack"]``
for ``stack`` (one running system per module, see ``service_stack``), or the
pieces: ``postgres_database`` (tests.support.postgres), ``redis_db_url`` and
``throwaway_redis`` (tests.support.redis_servers), ``smtp_server``
(tests.support.smtp), ``chromium`` and ``new_page`` (tests.support.chromium).
Without PostgreSQL or Redis the tests skip with the reason, or fail when
``REQUIRE_SERVICES=1`` (CI, see .ci/run).

- requirements: is a service there; skip or fail when it is not.
- processes: the app's processes in a production-like environment
  (``DEBUG=0``, every required value set), ``manage.py`` in a subprocess.
- postgres: a fresh PostgreSQL database migrated for a test or a module.
- redis_servers: a claimed database on the shared Redis, a throwaway
  redis-server a test may stop, and a MONITOR of what a Redis receives.
- smtp: an aiosmtpd server in this process that records every message and
  can refuse or hold one.
- stack: gunicorn, a Celery worker and beat, run together (``Stack``).
- patients: what a patient types into the form, and where it could leak.
- http_client: a plain HTTP client that fills in forms as a browser would.
- chromium: Debian's Chromium driven by Playwright, and axe-core.
- polling: waiting for a condition with a deadline; a free port.

Conditions are waited for by polling with a deadline; nothing asserts on how
long a sleep took. The bench (bench/) reuses processes, redis_servers,
http_client and polling.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
