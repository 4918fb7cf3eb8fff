"""The shared cache on Redis (CACHE_URL=redis://…), where the rate limits of
every web process live: it counts across processes, and it builds one Redis
client for its pool instead of one per call (bench finding: half a
millisecond each, several per form submission)."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from requests_app.models import ResetRequest

pytest_plugins = ["tests.services"]
pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_cache(redis_db_url, settings):
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": "portal_reset.cache.RedisCache", "LOCATION": redis_db_url},
    }
    cache = caches["default"]
    yield cache
    cache.clear()
    cache.close()


def close_all_open():
    ResetRequest.objects.filter(is_open=True).update(status="closed", is_open=False, close_reason="withdrawn")


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


def test_it_builds_one_redis_client_for_many_calls(redis_cache, submit, form_data, monkeypatch):
    client_class = redis_cache._cache._client
    built = []

    def counting_client(*args, **kwargs):
        built.append(1)
        return client_class(*args, **kwargs)

    monkeypatch.setattr(redis_cache._cache, "_client", counting_client)
    for n in range(10):
        assert submit(form_data(email=f"patient{n}@example.com")).status_code == 303
        close_all_open()
    redis_cache.set("probe", 1)
    assert redis_cache.incr("probe") == 2

    assert len(built) == 1
