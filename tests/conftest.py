"""Shared fixtures. Most tests run in-process on SQLite with Celery eager and
Django's locmem mail outbox; tests marked ``services`` use the real local
PostgreSQL, Redis and worker processes (see tests/support/)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache, caches
from django.core.management import call_command
from django.utils import timezone

from portal_reset.celery import app as celery_app
from requests_app.templatetags.email_fragments import kept_fragments

from .factories import ResetRequestFactory, StaffUserFactory


@pytest.fixture(autouse=True)
def celery_eager() -> Iterator[None]:
    """Tasks run inline, in the test's process, when they are queued."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def _media_and_var(settings: Any, tmp_path: Any) -> None:
    settings.EMAIL_FILE_PATH = tmp_path / "mail"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Staff users are created in many tests; a real hasher costs a second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    """Rate-limit counters live in the cache: each test starts from zero, and
    renders its pages and emails afresh (a test may change the settings they show).
    Cleared after the test too, so that nothing it left reaches the next."""
    cache.clear()
    caches["fragments"].clear()
    kept_fragments().clear()
    yield
    cache.clear()
    caches["fragments"].clear()
    kept_fragments().clear()


@pytest.fixture
def staff_user(db: None) -> Any:
    return StaffUserFactory(username="nurse", first_name="Nora", last_name="Nurse")


@pytest.fixture
def staff_group(db: None) -> Any:
    """The least-privilege group, as setup_staff_group makes it."""
    call_command("setup_staff_group", stdout=io.StringIO())
    return Group.objects.get(name="Reset staff")


@pytest.fixture
def staff(staff_user: Any, staff_group: Any) -> Any:
    """A staff member in the staff group."""
    staff_user.groups.add(staff_group)
    return staff_user


@pytest.fixture
def staff_client(client: Any, staff: Any) -> Any:
    client.force_login(staff)
    return client


@pytest.fixture
def superuser(db: None) -> Any:
    return StaffUserFactory(username="boss", superuser=True)


# A patient whose details appear nowhere in the pages' or emails' own
# wording: a test that finds one of them on a page has found a leak.
UNMISTAKABLE_PATIENT = {
    "first_name": "Zebulon",
    "last_name": "Quattlebaum",
    "date_of_birth": "1975-11-02",
    "email": "zq.private@example.com",
    "phone": "555-987-1234",
    "details": "Locked out since the firmware upgrade",
}


def valid_form_data(**overrides: Any) -> dict[str, str]:
    """A reset-request POST that passes every rule, for a visit well past
    the 48-hour window."""
    today = timezone.localdate()
    data = {
        "first_name": "Maria",
        "last_name": "Lopez",
        "date_of_birth": "1980-04-23",
        "email": "maria.lopez@example.com",
        "phone": "555-201-3344",
        "appointment_date": date.fromordinal(today.toordinal() - 5).isoformat(),
        "reason": "link_expired",
        "details": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def form_data() -> Callable[..., dict[str, str]]:
    return valid_form_data


@pytest.fixture
def reset_request(db: None) -> Any:
    return ResetRequestFactory()


@pytest.fixture
def submit(client: Any, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POST the reset form the way a browser does, and run what the app
    does after commit (queueing the emails; Celery is eager, so they are
    sent and land in ``django.core.mail.outbox``)."""

    def _submit(data: dict[str, Any], **extra: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/reset/", data, **extra)

    return _submit


def family_data(*members: tuple[str, str, str], total: int | None = None) -> dict[str, str]:
    """The ``family`` formset's fields for ``members`` (first, last, DOB)."""
    data = {
        "family-TOTAL_FORMS": str(len(members) if total is None else total),
        "family-INITIAL_FORMS": "0",
        "family-MIN_NUM_FORMS": "0",
        "family-MAX_NUM_FORMS": "5",
    }
    for i, (first, last, dob) in enumerate(members):
        data.update({f"family-{i}-first_name": first, f"family-{i}-last_name": last, f"family-{i}-date_of_birth": dob})
    return data
