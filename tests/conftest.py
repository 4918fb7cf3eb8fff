"""Shared fixtures. Most tests run in-process on SQLite with Celery eager and
Django's locmem mail outbox; tests marked ``services`` use the real local
PostgreSQL, Redis and worker processes (see tests/services.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from portal_reset.celery import app as celery_app

from .factories import ResetRequestFactory


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


@pytest.fixture
def staff_user(db: None) -> Any:
    return get_user_model().objects.create_user(
        username="nurse", password="correct horse battery staple", is_staff=True, first_name="Nora", last_name="Nurse"
    )


@pytest.fixture
def superuser(db: None) -> Any:
    return get_user_model().objects.create_superuser(username="boss", password="correct horse battery staple")


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
