"""Settings for portal-reset, read from the environment in this one place.

The defaults run the whole thing on one machine with no servers (SQLite under
``var/``, a filesystem Celery broker, emails written as ``.eml`` files). With
``DEBUG`` off — the default — every value production needs must be set, or
start-up stops with an error naming what is missing. See
docs/configuration.md for what each name means.

A management command on this machine runs on the local defaults with
``DEBUG=1 .venv/bin/python manage.py …`` (``make run``, ``make demo`` and
``make shell`` set it).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from portal_reset.client_address import parse_networks

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

# Values production cannot run without. With DEBUG off, each must be set in
# the environment; the local run falls back to the defaults next to them.
_missing: list[str] = []


def _required(name: str, local_default: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if not DEBUG:
        _missing.append(name)
    return local_default


def _positive_int(name: str, default: int) -> int:
    value = env.int(name, default=default)
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive whole number, got {value}.")
    return value


def _non_negative_int(name: str, default: int) -> int:
    value = env.int(name, default=default)
    if value < 0:
        raise ImproperlyConfigured(f"{name} must be 0 or a positive whole number, got {value}.")
    return value


def _private_var_dir() -> Path:
    """VAR_DIR, made if missing, readable by its owner only (0700): the local
    run keeps the secret key, the SQLite file and the .eml mail there, all
    with patients' details. An existing one of ours is tightened too."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    state = VAR_DIR.stat()
    if state.st_uid == os.getuid() and state.st_mode & 0o077:
        VAR_DIR.chmod(0o700)
    return VAR_DIR


def _local_secret_key() -> str:
    """A key generated once for the local run and kept under var/."""
    path = _private_var_dir() / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        _missing.append("SECRET_KEY")
    SECRET_KEY = _local_secret_key()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if not ALLOWED_HOSTS:
    if not DEBUG:
        _missing.append("ALLOWED_HOSTS")
    ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

# Every link in an email is built from SITE_URL, never from the Host header.
SITE_URL = _required("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

DATABASES = {"default": env.db_url_config(_required("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the Celery worker write to the same file: WAL lets
    # readers run beside a writer, IMMEDIATE takes the write lock at BEGIN so
    # two writers queue on the busy timeout instead of failing with
    # "database is locked" half-way through a transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # A new PostgreSQL connection per request costs about 3x a POST.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Statements run through requests_app.db.prepared_statement_cursor (a
    # submission, an email marked sent) are prepared on their first run on
    # a connection; off, they are still bound on the server, never
    # prepared. Django's other cursors bind on the client and are never
    # prepared, whatever this says.
    _prepared = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 0 if _prepared else None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_cache_url = _required("CACHE_URL", "locmemcache://")
CACHES = {"default": env.cache_url_config(_cache_url)}
if CACHES["default"]["BACKEND"] in ("django.core.cache.backends.redis.RedisCache", "django_redis.cache.RedisCache"):
    # redis://… runs on django-redis: one client per connection pool, and a
    # cache django-ratelimit supports. django-environ picks it only when it
    # finds it installed; named here, it never falls back to Django's own
    # backend, and options in the URL's query (?socket_timeout=2) reach
    # OPTIONS in the upper case django-redis reads. No IGNORE_EXCEPTIONS:
    # with Redis down a cache call raises, and the views' rate limits catch
    # that and let the patient through.
    CACHES["default"] = env.cache_url_config(_cache_url, backend="django_redis.cache.RedisCache")
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("CLIENT_CLASS", "django_redis.client.DefaultClient")
# Rendered page fragments that are the same for everyone (the empty reset
# form, per language): kept in each process, as templates are.
CACHES["fragments"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "fragments"}
SILENCED_SYSTEM_CHECKS: list[str] = []
if CACHES["default"]["BACKEND"].endswith("LocMemCache"):
    # Rate limits live in the cache. Local memory is per process, which is
    # right for the local run (one web process); production sets CACHE_URL
    # to Redis, shared by every web process. (W001 says the same of any
    # backend not on django-ratelimit's list; django-redis is on it.)
    SILENCED_SYSTEM_CHECKS += ["django_ratelimit.E003", "django_ratelimit.W001"]

INSTALLED_APPS = [
    "requests_app.apps.StaffAdminConfig",  # django.contrib.admin, with TOTP
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_ratelimit",
    "axes",
    # EMAIL_PROVIDER's backends and delivery reports (django-anymail).
    "anymail",
    "requests_app",
]

MIDDLEWARE = [
    "portal_reset.middleware.RequestIdMiddleware",
    # Above everything else, so that every response carries it.
    "portal_reset.middleware.PermissionsPolicyMiddleware",
    # X-Forwarded-Proto and CLIENT_IP_HEADER believed from TRUSTED_PROXIES
    # only: before SecurityMiddleware asks whether the request is secure.
    "portal_reset.middleware.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # A form body in a charset Django cannot decode: 400 before anything
    # (CSRF, a view, an error handler) reads it, and below the two above so
    # that the 400 carries their headers too. Neither reads the body.
    "portal_reset.middleware.BodyCharsetMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's LocaleMiddleware (the browser's Accept-Language, or the
    # language the patient picked), with staff pages kept in English.
    "requests_app.i18n.PatientLocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses any login attempt for a locked-out account.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "portal_reset.urls"
WSGI_APPLICATION = "portal_reset.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "requests_app.context_processors.practice",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
USE_I18N = True
# Patient pages and patient emails; staff pages and emails stay English.
# Each language is named in itself: this list is the patients' switch.
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The language a patient picked on the site's switch, kept for a year.
LANGUAGE_COOKIE_AGE = 365 * 24 * 60 * 60
LANGUAGE_COOKIE_SAMESITE = "Lax"
USE_TZ = True
# Times are stored in UTC and shown in the practice's own zone (below).

STATIC_URL = "/static/"
# Not under VAR_DIR: the image builds its static files once, whatever
# VAR_DIR a deployment chooses.
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# The local run serves static files straight from the source folders.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- The practice -----------------------------------------------------------

PRACTICE_NAME = env.str("PRACTICE_NAME", default="IFM")
PRACTICE_CONTACT_EMAIL = env.str("PRACTICE_CONTACT_EMAIL", default="frontdesk@practice.example")
# The number staff call patients from and patients call back: tap-to-call on
# patient pages and in patient emails. Read as the form reads a patient's
# (a US number unless it has a country code) and kept in E.164. The default
# is in the 555-01xx range reserved for fiction.
PRACTICE_PHONE = env.str("PRACTICE_PHONE", default="+1 555 010 0199")


def _practice_phone_e164(value: str) -> str:
    from requests_app.phones import parse_phone  # plain phonenumbers; no Django app is loaded

    e164 = parse_phone(value)
    if e164 is None:
        raise ImproperlyConfigured(f"PRACTICE_PHONE {value!r} is not a possible phone number.")
    return e164


PRACTICE_PHONE = _practice_phone_e164(PRACTICE_PHONE)
PRACTICE_TIME_ZONE = env.str("PRACTICE_TIME_ZONE", default="America/New_York")
try:
    ZoneInfo(PRACTICE_TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError) as exc:
    raise ImproperlyConfigured(f"PRACTICE_TIME_ZONE {PRACTICE_TIME_ZONE!r} is not a known time zone.") from exc
TIME_ZONE = PRACTICE_TIME_ZONE
# The working hours the due clock and the patients' promise count in (in
# PRACTICE_TIME_ZONE), and the days off on top of them: kept as written,
# checked here so that a bad entry stops start-up, naming it.
PRACTICE_HOURS = env.str("PRACTICE_HOURS", default="") or "Mon-Fri 08:00-17:00"
PRACTICE_CLOSED_DATES = env.str("PRACTICE_CLOSED_DATES", default="")


def _check_working_hours() -> None:
    from requests_app.working_hours import parse_closed_dates, parse_practice_hours  # no Django app is loaded

    parse_practice_hours(PRACTICE_HOURS)
    parse_closed_dates(PRACTICE_CLOSED_DATES)


_check_working_hours()

PORTAL_NAME = env.str("PORTAL_NAME", default="Patient Fusion")
PORTAL_LOGIN_URL = env.str("PORTAL_LOGIN_URL", default="https://www.patientfusion.com/")
PORTAL_HELP_URL = env.str("PORTAL_HELP_URL", default="https://help.patientfusion.com/s/")
PORTAL_TROUBLE_URL = env.str(
    "PORTAL_TROUBLE_URL",
    default="https://help.patientfusion.com/s/article/I-m-having-trouble-logging-in",
)

ACCESS_LINK_HOURS = _positive_int("ACCESS_LINK_HOURS", 48)
RESET_SLA_HOURS = _positive_int("RESET_SLA_HOURS", 24)
WAITING_AUTO_CLOSE_DAYS = _positive_int("WAITING_AUTO_CLOSE_DAYS", 14)
# Days after a request ended during which staff may reopen it.
REOPEN_DAYS = _positive_int("REOPEN_DAYS", 30)
RETENTION_DAYS = _positive_int("RETENTION_DAYS", 365)
# Held submissions (suspected bots, or past the per-email limit with no open
# request) are deleted this long after they came in, unless staff release one.
HELD_RETENTION_DAYS = _positive_int("HELD_RETENTION_DAYS", 7)

# --- Email ------------------------------------------------------------------

DEFAULT_FROM_EMAIL = _required("DEFAULT_FROM_EMAIL", "portal-reset@practice.example")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
STAFF_NOTIFY_EMAIL = _required("STAFF_NOTIFY_EMAIL", "staff@practice.example")

EMAIL_HOST = env.str("EMAIL_HOST", default="")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
    EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
else:
    if not DEBUG:
        _missing.append("EMAIL_HOST")
    EMAIL_BACKEND = "requests_app.outbox.backends.EmlFileBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"

# A worker renews its claims on the outbox rows it is sending four times in
# this many seconds (requests_app/outbox/lease.py); a claim not renewed for
# this long belongs to a worker that died, and may be claimed again. A
# worker that starts queues such rows once this has passed, so a killed
# worker's emails go out about this long after a new one starts.
EMAIL_CLAIM_TIMEOUT_SECONDS = _positive_int("EMAIL_CLAIM_TIMEOUT_SECONDS", 20)
EMAIL_MAX_ATTEMPTS = _positive_int("EMAIL_MAX_ATTEMPTS", 6)
# Backoff after a temporary SMTP failure: about this many seconds, then twice
# as long each time (with jitter), capped at 30 minutes — well below the
# broker's visibility timeout.
EMAIL_RETRY_BASE_SECONDS = _positive_int("EMAIL_RETRY_BASE_SECONDS", 30)
# Outbox ids per Celery message: a worker sends one message's emails over one
# SMTP connection (a sweep's backlog, emails queued in one transaction).
# Each message costs a claim, a Celery task and an SMTP connection: at 10 a
# backlog took a fifth more CPU per email than at 50.
EMAIL_BATCH_SIZE = 50
# A batch starts no new message after this long (a slow server): the rest go
# back to the queue as a new message, well before the task's time limit.
EMAIL_BATCH_SECONDS = 30
# A worker process keeps its SMTP connection open this long after a batch,
# for the next one (requests_app/outbox/kept_connection.py): a submission's
# two emails cost less than opening a connection for them. 0: QUIT after
# every batch.
EMAIL_SMTP_IDLE_SECONDS = _non_negative_int("EMAIL_SMTP_IDLE_SECONDS", 10)

# --- Delivery feedback: an email provider instead of SMTP -------------------

# Unset: plain SMTP as above, and no delivery feedback. Set to one of
# EMAIL_PROVIDERS: that provider's django-anymail backend sends the outbox,
# and its tracking webhook (/email/anymail/<provider>/tracking/) reports
# bounces, rejections and spam complaints back (requests_app/
# delivery_feedback.py; docs/email-providers.md). The provider's values are
# read from the environment under the names anymail gives them.
EMAIL_PROVIDERS = {
    "postmark": "anymail.backends.postmark.EmailBackend",
    "amazon_ses": "anymail.backends.amazon_ses.EmailBackend",
    "mailgun": "anymail.backends.mailgun.EmailBackend",
    "sendgrid": "anymail.backends.sendgrid.EmailBackend",
    "brevo": "anymail.backends.brevo.EmailBackend",
}
EMAIL_PROVIDER = env.str("EMAIL_PROVIDER", default="").strip().lower()
# Basic auth for the webhook, "user:password" (both long and random): the
# only authentication Postmark, Amazon SES (SNS) and Brevo have.
_webhook_secret = env.str("ANYMAIL_WEBHOOK_SECRET", default="")
_provider_values = {
    "postmark": {"POSTMARK_SERVER_TOKEN": env.str("POSTMARK_SERVER_TOKEN", default="")},
    # boto3 reads its own credentials and region (AWS_ACCESS_KEY_ID,
    # AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, or an instance role).
    "amazon_ses": {
        "AMAZON_SES_CONFIGURATION_SET_NAME": env.str("AMAZON_SES_CONFIGURATION_SET_NAME", default=""),
    },
    "mailgun": {
        "MAILGUN_API_KEY": env.str("MAILGUN_API_KEY", default=""),
        "MAILGUN_WEBHOOK_SIGNING_KEY": env.str("MAILGUN_WEBHOOK_SIGNING_KEY", default=""),
        # https://api.eu.mailgun.net/v3 for a domain in Mailgun's EU region.
        "MAILGUN_API_URL": env.str("MAILGUN_API_URL", default=""),
        "MAILGUN_SENDER_DOMAIN": env.str("MAILGUN_SENDER_DOMAIN", default=""),
    },
    "sendgrid": {
        "SENDGRID_API_KEY": env.str("SENDGRID_API_KEY", default=""),
        "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": env.str("SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY", default=""),
    },
    "brevo": {"BREVO_API_KEY": env.str("BREVO_API_KEY", default="")},
}
# What each provider cannot run without: every name in a group of one, at
# least one name of a longer group (SendGrid's webhook is authenticated by
# basic auth or by its signature, Mailgun's by its signature).
_provider_required: dict[str, list[tuple[str, ...]]] = {
    "postmark": [("POSTMARK_SERVER_TOKEN",), ("ANYMAIL_WEBHOOK_SECRET",)],
    "amazon_ses": [("ANYMAIL_WEBHOOK_SECRET",)],
    "mailgun": [("MAILGUN_API_KEY",), ("MAILGUN_WEBHOOK_SIGNING_KEY",)],
    "sendgrid": [("SENDGRID_API_KEY",), ("ANYMAIL_WEBHOOK_SECRET", "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY")],
    "brevo": [("BREVO_API_KEY",), ("ANYMAIL_WEBHOOK_SECRET",)],
}
ANYMAIL: dict[str, object] = {}
if EMAIL_PROVIDER:
    if EMAIL_PROVIDER not in EMAIL_PROVIDERS:
        raise ImproperlyConfigured(
            f"EMAIL_PROVIDER {EMAIL_PROVIDER!r} is not one of: {', '.join(EMAIL_PROVIDERS)} (or unset for SMTP)."
        )
    if _webhook_secret and ":" not in _webhook_secret:
        raise ImproperlyConfigured("ANYMAIL_WEBHOOK_SECRET must be user:password (basic auth), with a colon.")
    EMAIL_BACKEND = EMAIL_PROVIDERS[EMAIL_PROVIDER]
    # The provider's API sends instead of SMTP.
    if "EMAIL_HOST" in _missing:
        _missing.remove("EMAIL_HOST")
    _given = {name: value for name, value in _provider_values[EMAIL_PROVIDER].items() if value}
    if _webhook_secret:
        _given["ANYMAIL_WEBHOOK_SECRET"] = _webhook_secret
    if not DEBUG:
        _missing.extend(
            " or ".join(group) for group in _provider_required[EMAIL_PROVIDER] if not set(group) & set(_given)
        )
    ANYMAIL = {
        ("WEBHOOK_SECRET" if name == "ANYMAIL_WEBHOOK_SECRET" else name): value for name, value in _given.items()
    }
    # No open or click tracking: no pixel, no rewritten links, where the
    # provider takes it per message (Amazon SES and Brevo do not: their
    # account settings say; docs/email-providers.md).
    if EMAIL_PROVIDER in ("postmark", "mailgun", "sendgrid"):
        ANYMAIL["SEND_DEFAULTS"] = {"track_clicks": False, "track_opens": False}

# --- Celery -----------------------------------------------------------------

CELERY_BROKER_URL = _required("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = _private_var_dir() / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Longer than any retry countdown or task time limit, so a task a
        # worker holds is not handed to a second worker while still running.
        "visibility_timeout": 3600,
        "socket_connect_timeout": 1,
        "socket_timeout": 5,
        # A worker takes from its queues in the order of CELERY_TASK_QUEUES.
        "queue_order_strategy": "priority",
    }
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # kombu's Redis transport, publishing through one client instead of a
    # new one per message (portal_reset/broker.py).
    CELERY_BROKER_TRANSPORT = "portal_reset.broker:Transport"
# Patients' emails first: a worker takes the next message from
# "patient_email" while there is one, then from the default queue (staff
# notifications, the digest, retries, scheduled work). Under a burst the
# acknowledgments go out at once and the staff notices catch up after.
CELERY_TASK_QUEUES = (Queue("patient_email", routing_key="patient_email"), Queue("celery", routing_key="celery"))
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# Beat's crontab entries (the daily digest) read in the practice's time zone.
CELERY_TIMEZONE = PRACTICE_TIME_ZONE
# At-least-once: a task is acknowledged after it ran, and handed to another
# worker if the one running it dies. Every task is safe to run twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Pool processes of a worker (WORKER_CONCURRENCY; unset or empty: twice the
# cores). A batch of emails waits on the SMTP server and on PostgreSQL for
# every message, so one process per core leaves the cores idle part of the
# time; each process is about 90-110 MB. A command line's --concurrency wins.
CELERY_WORKER_CONCURRENCY = (
    _positive_int("WORKER_CONCURRENCY", 1)
    if env.str("WORKER_CONCURRENCY", default="").strip()
    else 2 * (os.cpu_count() or 1)
)
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
# A broker that is down must not hold a patient's request for long: the
# outbox row stays pending and the sweeper queues it again later.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
DIGEST_HOUR = env.int("DIGEST_HOUR", default=7)
CELERY_BEAT_SCHEDULE = {
    "sweep-outbox": {"task": "requests_app.tasks.sweep_outbox", "schedule": 60.0},
    "close-stale-waiting": {"task": "requests_app.tasks.close_stale_waiting", "schedule": crontab(minute=15)},
    "purge-expired": {"task": "requests_app.tasks.purge_expired", "schedule": crontab(hour=3, minute=30)},
    "overdue-digest": {
        "task": "requests_app.tasks.queue_overdue_digest",
        "schedule": crontab(hour=DIGEST_HOUR, minute=0),
    },
}

# --- Security ---------------------------------------------------------------

SUBMIT_RATE_PER_EMAIL = env.str("SUBMIT_RATE_PER_EMAIL", default="5/h")
SUBMIT_RATE_PER_ADDRESS = env.str("SUBMIT_RATE_PER_ADDRESS", default="20/h")
SUBMIT_MIN_SECONDS = env.int("SUBMIT_MIN_SECONDS", default=3)
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="")
# The TLS proxy's addresses or networks: CLIENT_IP_HEADER and
# X-Forwarded-Proto are believed only from a peer in one of them
# (portal_reset.client_address, TrustedProxyMiddleware); gunicorn.conf.py
# gives gunicorn's forwarded_allow_ips the same list.
TRUSTED_PROXIES = parse_networks("TRUSTED_PROXIES", env.str("TRUSTED_PROXIES", default="") or "127.0.0.1,::1")
STAFF_MFA = env.bool("STAFF_MFA", default=not DEBUG)
STAFF_SESSION_IDLE_MINUTES = _positive_int("STAFF_SESSION_IDLE_MINUTES", 30)

# Failed staff logins: an account is locked after STAFF_LOGIN_FAILURE_LIMIT
# wrong passwords from anywhere, even for the right one, until
# STAFF_LOCKOUT_MINUTES have passed; so is an address that fails that often
# across accounts (password spraying).
AXES_FAILURE_LIMIT = _positive_int("STAFF_LOGIN_FAILURE_LIMIT", 4)
AXES_COOLOFF_TIME = _positive_int("STAFF_LOCKOUT_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "portal_reset.client_address.axes_client_ip"
AXES_SENSITIVE_PARAMETERS = ["password", "otp_token"]
AXES_VERBOSE = False

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe the health check over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if not DEBUG:
    # From the proxy only: TrustedProxyMiddleware deletes the header from
    # any other peer before SecurityMiddleware reads it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = STAFF_SESSION_IDLE_MINUTES * 60
SESSION_SAVE_EVERY_REQUEST = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# PermissionsPolicyMiddleware: no page may use these, nor any frame of it.
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=()"
CSRF_TRUSTED_ORIGINS = [SITE_URL] if SITE_URL.startswith("http") else []
CSRF_FAILURE_VIEW = "requests_app.views.csrf.csrf_failure"

# Patient forms are a few kilobytes; refuse anything far larger up front.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200
FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# No inline script anywhere: every script is a file under static/.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# --- Logging: no personal data, ever ----------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# JSON lines in production (one object per line for the log collector),
# plain text for the local run.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "portal_reset.log_filters.RequestIdFilter"},
        "mask_status_tokens": {"()": "portal_reset.log_filters.MaskStatusTokenFilter"},
        # No query string in any line: an admin search's ?q= may be an email.
        "no_query_strings": {"()": "portal_reset.log_filters.QueryStringFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "mask_status_tokens", "no_query_strings"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own defaults would keep a console handler of theirs on
        # "django" (with DEBUG on: every django.* line a second time, with
        # no filter above) and send the development server's request lines
        # to no handler at all (Python's last resort, unfiltered). Every
        # line goes to the console handler above instead.
        "django": {"handlers": [], "propagate": True},
        # Django logs a 4xx/5xx request with its full path; status links
        # carry a secret token, so those lines are not kept.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING", "propagate": True},
    },
}

if _missing:
    raise ImproperlyConfigured(
        "DEBUG is off, so these settings must be set in the environment: "
        + ", ".join(_missing)
        + ". For a local run on this machine, set DEBUG=1: make run, make demo and make shell do,"
        + " or run DEBUG=1 .venv/bin/python manage.py …"
    )
