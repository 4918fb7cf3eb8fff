"""The Redis broker transport (portal_reset/broker.py): kombu's, with one
publishing client per channel instead of a new one per message, on a real
Redis. What reaches the queue is what kombu's own transport puts there."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from portal_reset import broker

from .support.processes import manage_json, production_env

pytest_plugins = ["tests.support.redis_servers"]

QUEUE = Queue("patient_email", Exchange("patient_email"), routing_key="patient_email")


@pytest.fixture
def clients_built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    built: list[Any] = []
    create = kombu_redis.Channel._create_client

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = create(self, *args, **kwargs)
        built.append(client)
        return client

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counting)
    return built


def publish(connection: Connection, bodies: list[list[int]]) -> None:
    with connection.Producer(serializer="json") as producer:
        for body in bodies:
            producer.publish(body, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE])


def queued(url: str) -> list[Any]:
    client = redis.Redis.from_url(url)
    try:
        # kombu's Redis transport writes each body base64-encoded in a JSON envelope.
        envelopes = [json.loads(raw) for raw in reversed(client.lrange("patient_email", 0, -1))]
        return [json.loads(base64.b64decode(envelope["body"])) for envelope in envelopes]
    finally:
        client.close()


TRANSPORT_CLASS = """
import json
from portal_reset.celery import app
transport = type(app.connection_for_write().transport)
print(json.dumps(transport.__module__ + "." + transport.__name__))
"""


@pytest.mark.parametrize(
    ("broker_url", "transport"),
    [
        ("redis://127.0.0.1:9/0", "portal_reset.broker.Transport"),
        ("rediss://127.0.0.1:9/0", "portal_reset.broker.Transport"),
        ("memory://", "kombu.transport.memory.Transport"),
    ],
)
def test_a_redis_broker_url_takes_this_transport(broker_url: str, transport: str, tmp_path: Path) -> None:
    env = production_env(
        var_dir=tmp_path,
        site_url="https://portal.example.org",
        database_url="postgres://portal@127.0.0.1:9/portal",
        broker_url=broker_url,
        cache_url="redis://127.0.0.1:9/1",
        smtp_port=9,
        LOG_LEVEL="WARNING",
    )
    assert manage_json(env, TRANSPORT_CLASS) == transport


def test_one_client_publishes_every_message_and_each_arrives(redis_db_url: str, clients_built: list[Any]) -> None:
    with Connection(redis_db_url, transport=broker.Transport) as connection:
        publish(connection, [[1], [2, 3], [4]])
        publishing = [c for c in clients_built if c.connection_pool is connection.default_channel.pool]
    assert queued(redis_db_url) == [[1], [2, 3], [4]]
    assert len(publishing) == 1


def test_kombu_s_own_transport_builds_a_client_per_message(redis_db_url: str, clients_built: list[Any]) -> None:
    # What the subclass is for: if kombu stops doing this, it can go.
    with Connection(redis_db_url) as connection:
        publish(connection, [[1], [2], [3]])
    assert queued(redis_db_url) == [[1], [2], [3]]
    assert len(clients_built) >= 4


def test_a_renewed_pool_gets_a_new_client(redis_db_url: str) -> None:
    # kombu renews the channel's pool after a fork or a failed ping; the
    # kept client must not go on using the old one.
    with Connection(redis_db_url, transport=broker.Transport) as connection:
        publish(connection, [[1]])
        channel = connection.default_channel
        first = channel._shared_client
        channel._disconnect_pools()
        publish(connection, [[2]])
        assert channel._shared_client is not first
        assert channel._shared_client.connection_pool is channel.pool
    assert queued(redis_db_url) == [[1], [2]]
