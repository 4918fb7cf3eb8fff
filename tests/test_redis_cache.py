"""The shared cache on Redis (CACHE_URL=redis://…), where the rate limits of
every web process live: settings put it on django-redis, it counts across
processes, and with Redis down it raises — which the form's rate limits
catch, taking the patient's request — then counts again once Redis is back."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings
from django_ratelimit.checks import check_caches

from requests_app.models import ResetRequest

pytest_plugins = ["tests.support.redis_servers"]
pytestmark = pytest.mark.django_db

SETTINGS_FILE = Path(__file__).resolve().parent.parent / "portal_reset" / "settings.py"
# Nothing listens on port 1: a Redis that is down.
DOWN_REDIS_URL = "redis://127.0.0.1:1/0"


def settings_for(monkeypatch: pytest.MonkeyPatch, cache_url: str) -> Any:
    """portal_reset/settings.py as it reads with CACHE_URL=``cache_url`` (the
    rest of the environment as the suite runs it, DEBUG=1)."""
    monkeypatch.setenv("CACHE_URL", cache_url)
    spec = importlib.util.spec_from_file_location("_settings_for_cache_url", SETTINGS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def configured_cache(monkeypatch: pytest.MonkeyPatch, cache_url: str) -> dict[str, Any]:
    return settings_for(monkeypatch, cache_url).CACHES["default"]


@pytest.fixture
def use_cache_url(settings, monkeypatch):
    """Put the default cache on the one settings build for a CACHE_URL; back
    on the suite's own before the Redis behind it goes away (conftest clears
    the default cache after every test)."""
    suite_caches = settings.CACHES

    def use(cache_url: str) -> Any:
        settings.CACHES = {**suite_caches, "default": configured_cache(monkeypatch, cache_url)}
        return caches["default"]

    yield use
    settings.CACHES = suite_caches


@pytest.fixture
def redis_cache(redis_db_url, use_cache_url):
    cache = use_cache_url(redis_db_url)
    yield cache
    caches["default"].clear()


def test_it_puts_a_redis_cache_url_on_django_redis_with_the_url_s_options(monkeypatch):
    config = configured_cache(monkeypatch, "redis://:s3cret@cache.internal:6379/1?socket_timeout=2")

    assert config == {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://:s3cret@cache.internal:6379/1",
        # Upper case, as django-redis reads them; no IGNORE_EXCEPTIONS.
        "OPTIONS": {"SOCKET_TIMEOUT": 2, "CLIENT_CLASS": "django_redis.client.DefaultClient"},
    }


def test_it_satisfies_django_ratelimit_s_cache_check_without_silencing_it(monkeypatch):
    with_redis = settings_for(monkeypatch, "redis://127.0.0.1:6379/1")

    with override_settings(CACHES=with_redis.CACHES):
        assert check_caches(None) == []
    assert not [name for name in with_redis.SILENCED_SYSTEM_CHECKS if name.startswith("django_ratelimit.")]


@pytest.mark.services
def test_it_limits_one_address_across_web_processes_sharing_redis(redis_cache, submit, form_data, settings):
    settings.SUBMIT_RATE_PER_ADDRESS = "3/h"
    for n in range(3):
        assert submit(form_data(email=f"p{n}@example.com")).status_code == 303
    # The next submission reaches another web process: a cache object of
    # its own, with its own pool, on the same Redis.
    redis_cache.close()
    del caches["default"]
    assert caches["default"] is not redis_cache

    response = submit(form_data(email="p9@example.com"))

    assert response.status_code == 429
    assert not ResetRequest.objects.filter(email="p9@example.com").exists()


def test_it_raises_when_redis_is_down_and_the_form_still_takes_the_request(use_cache_url, submit, form_data):
    cache = use_cache_url(DOWN_REDIS_URL)

    # Not swallowed (no IGNORE_EXCEPTIONS): a None here would read as
    # "no count yet" to the rate limits.
    with pytest.raises(Exception, match=r"127\.0\.0\.1:1\b"):
        cache.add("probe", 1)
    response = submit(form_data())

    assert response.status_code == 303
    assert ResetRequest.objects.filter(email=form_data()["email"]).exists()


def wait_until_answering(cache: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            cache.set("probe", 1)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.services
def test_it_counts_again_once_redis_is_back(throwaway_redis, use_cache_url, settings, submit, form_data):
    settings.SUBMIT_RATE_PER_ADDRESS = "2/h"
    cache = use_cache_url(throwaway_redis.url(1))
    assert submit(form_data(email="before@example.com")).status_code == 303

    throwaway_redis.stop()
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises; the views catch any
        cache.add("probe", 1)
    assert submit(form_data(email="during@example.com")).status_code == 303
    throwaway_redis.start()
    wait_until_answering(cache)  # the same cache object: its pool reconnects

    # The outage lost the count (no persistence): two more, then the limit.
    assert submit(form_data(email="after1@example.com")).status_code == 303
    assert submit(form_data(email="after2@example.com")).status_code == 303
    assert submit(form_data(email="after3@example.com")).status_code == 429
