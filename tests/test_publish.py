"""A submission's emails reach the broker by outbox/publish.py's own short
way (_publish_at_once): the message must be the one Celery's apply_async
puts there, on a real Redis with production settings, and on the local
run's filesystem broker."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from .support.processes import base_env, manage_json, production_env

pytest_plugins = ["tests.support.redis_servers"]

BOTH_WAYS = """
import json
import redis
from celery import current_app
from celery.signals import before_task_publish
from django.conf import settings
from requests_app.outbox import publish

signalled = []
before_task_publish.connect(lambda **kw: signalled.append(kw["body"][0]), weak=False)
task = current_app.tasks[publish.SEND_EMAILS_TASK]
broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
task.apply_async(args=[[7, 8]], queue="patient_email")
publish._publish_at_once(task, [7, 8], "patient_email")
may = publish._may_publish_at_once(task)
publish.email_publish(email_ids=[9], queue="patient_email")
queued = [json.loads(m) for m in reversed(broker.lrange("patient_email", 0, -1))]
print(json.dumps({"may": may, "queued": queued, "signalled": signalled}))
"""

# Drawn afresh for every message.
PER_MESSAGE = {"headers": ("id", "root_id"), "properties": ("correlation_id", "delivery_tag")}


def without_ids(message: dict[str, Any]) -> dict[str, Any]:
    message = json.loads(json.dumps(message))
    for part, keys in PER_MESSAGE.items():
        for key in keys:
            assert message[part].pop(key)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


@pytest.fixture
def queued(redis_db_url: str, tmp_path: Path) -> dict[str, Any]:
    env = production_env(
        var_dir=tmp_path,
        site_url="https://portal.example.org",
        database_url="postgres://portal@127.0.0.1:9/portal",
        broker_url=redis_db_url,
        cache_url=redis_db_url,
        smtp_port=9,
        LOG_LEVEL="WARNING",
    )
    return manage_json(env, BOTH_WAYS)


@pytest.mark.services
def test_the_short_way_puts_on_the_queue_what_apply_async_puts_there(queued):
    [celery_s, ours, _] = queued["queued"]

    assert queued["may"]  # in a web process, with production settings
    assert without_ids(ours) == without_ids(celery_s)
    assert ours["headers"]["task"] == "requests_app.tasks.send_emails"
    assert ours["headers"]["id"] == ours["properties"]["correlation_id"]
    assert json.loads(base64.b64decode(ours["body"]))[0] == [[7, 8]]
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": "patient_email"}


@pytest.mark.services
def test_an_outbox_publish_to_a_queue_takes_the_short_way(queued):
    [celery_s, _, published] = queued["queued"]

    # Only apply_async went through Celery's send_task (its publish signal).
    assert queued["signalled"] == [[[7, 8]]]
    assert json.loads(base64.b64decode(published["body"]))[0] == [[9]]
    assert without_ids(published)["headers"] == {**without_ids(celery_s)["headers"], "argsrepr": "[[9]]"}


ON_THE_FILESYSTEM = """
import json
from pathlib import Path
from celery import current_app
from django.conf import settings
from requests_app.outbox import publish

task = current_app.tasks[publish.SEND_EMAILS_TASK]
task.apply_async(args=[[7, 8]], queue="patient_email")
publish.email_publish(email_ids=[7, 8], queue="patient_email")
folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
files = sorted(folder.glob("*.patient_email.msg"), key=lambda path: path.name)
print(json.dumps({"may": publish._may_publish_at_once(task), "queued": [json.loads(f.read_text()) for f in files]}))
"""


def test_on_the_local_run_s_filesystem_broker_too(tmp_path: Path) -> None:
    result = manage_json(base_env(DEBUG="1", VAR_DIR=str(tmp_path)), ON_THE_FILESYSTEM)

    assert result["may"]
    [celery_s, ours] = result["queued"]
    assert without_ids(ours) == without_ids(celery_s)
