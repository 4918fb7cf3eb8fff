"""django-helpdesk 2.6.1 as a bench target beside portal-reset: its public
ticket form (GET and POST /tickets/submit/), served the way ours is.

It runs from a virtualenv of its own, var/bench-helpdesk/venv, made here on
first use from bench/helpdesk_project/requirements.txt (pinned; pip and
PyPI, as `make` installs .venv) and made again when that file changes.
Nothing of it lands in .venv or in production.
bench/helpdesk_project/helpdesk_site/ is the Django project around it:
DEBUG off, the same PostgreSQL server (a database of its own, dropped
after), CONN_MAX_AGE 60, the dummy email backend (helpdesk renders the
submitter's email in the request, then hands it to the backend).
gunicorn runs it from the same gunicorn.conf.py as portal-reset (2 sync
workers, worker recycling, the access log).
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.polling import free_port, wait_for
from tests.support.processes import ManagedProcess, base_env

from .stack import REPO, create_database, drop_database

# The project's folder, on its PYTHONPATH (and nothing else of bench/).
PROJECT_DIR = Path(__file__).with_name("helpdesk_project")
REQUIREMENTS = PROJECT_DIR / "requirements.txt"
VENV = REPO / "var" / "bench-helpdesk" / "venv"
PATH = "/tickets/submit/"
TICKET_TABLE = "helpdesk_ticket"
QUEUE_SLUG = "portal"

# What a patient would type into a general helpdesk to ask for the same
# thing: a title, the story, their email (a different one each POST).
SETUP = f"""
from helpdesk.models import Queue
queue, _ = Queue.objects.get_or_create(
    slug={QUEUE_SLUG!r}, defaults={{"title": "Portal access", "allow_public_submission": True}}
)
print(queue.pk)
"""


def ensure_venv(log: object = print) -> Path:
    """The virtualenv's bin/, installed from REQUIREMENTS if it is missing or stale."""
    marker = VENV / ".installed"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if marker.exists() and marker.read_text().strip() == wanted:
        return VENV / "bin"
    log(f"installing django-helpdesk into {VENV.relative_to(REPO)} (bench only)")  # type: ignore[operator]
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603 - pip from the virtualenv just made
        [
            str(VENV / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    marker.write_text(wanted + "\n")
    return VENV / "bin"


@dataclass
class HelpdeskSite:
    root: Path
    admin_url: str
    bin_dir: Path = VENV / "bin"
    port: int = 0
    db_name: str = ""
    database_url: str = ""
    queue_id: int = 0
    web: ManagedProcess | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def site_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_name, self.database_url = create_database(self.admin_url)
        self.port = free_port()
        self.env = base_env(
            DJANGO_SETTINGS_MODULE="helpdesk_site.settings",
            PYTHONPATH=str(PROJECT_DIR),
            PATH=f"{self.bin_dir}:/usr/bin:/bin",
            DATABASE_URL=self.database_url,
            SECRET_KEY=secrets.token_urlsafe(50),
            STATIC_ROOT=str(self.root / "static"),
            MEDIA_ROOT=str(self.root / "media"),
            # gunicorn.conf.py: the same server as portal-reset's.
            PORT=str(self.port),
            WEB_CONCURRENCY="2",
            LOG_LEVEL="INFO",
        )
        self.manage("migrate", "--no-input")
        # helpdesk's own email templates (its install guide's step).
        self.manage("loaddata", "emailtemplate.json")
        self.queue_id = int(self.manage("shell", "-c", SETUP).split()[-1])
        self.web = ManagedProcess(
            "helpdesk gunicorn",
            [
                str(self.bin_dir / "gunicorn"),
                "-c",
                str(REPO / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "helpdesk_site.wsgi",
            ],
            env=self.env,
            log_path=self.root / "helpdesk-gunicorn.log",
        )
        wait_for(self._ready, timeout=60, what="helpdesk's gunicorn", interval=0.2, diagnostics=self.web.tail)

    def form_data(self, email: str) -> dict[str, str]:
        return {
            "queue": str(self.queue_id),
            "title": "Patient portal access reset",
            "body": "The invitation link expired. Visit on 2026-11-20; date of birth 1979-11-07; phone (617) 555-0142.",
            "priority": "3",
            "submitter_email": email,
        }

    def _ready(self) -> bool:
        import http.client

        if self.web is not None and not self.web.alive():
            raise SystemExit(f"helpdesk's gunicorn exited\n{self.web.tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
        try:
            conn.request("GET", PATH)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def manage(self, *args: str) -> str:
        result = subprocess.run(  # noqa: S603 - the bench virtualenv's django-admin
            [str(self.bin_dir / "django-admin"), *args],
            cwd=PROJECT_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"helpdesk: django-admin {args[0]} exited {result.returncode}\n{result.stderr[-3000:]}")
        return result.stdout

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop(grace=10)
        if self.db_name:
            drop_database(self.admin_url, self.db_name)
