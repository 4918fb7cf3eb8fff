"""Outbox ids to the broker.

The task is looked up by name in Celery's registry, not imported: ``tasks``
imports the outbox, so the outbox importing ``tasks`` back would tie the two
in a cycle. The app's ``ready()`` imports ``tasks``, so the task is
registered in every process that runs Django.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import current_app
from celery.utils import uuid
from django.conf import settings

from ..models import PATIENT_EMAIL_KINDS

logger = logging.getLogger(__name__)

SEND_EMAILS_TASK = "requests_app.tasks.send_emails"
# The emails a patient waits for (portal_reset/settings.py: CELERY_TASK_QUEUES).
PATIENT_EMAIL_QUEUE = "patient_email"


def email_publish(*, email_ids: Sequence[int], countdown: float | None = None, queue: str | None = None) -> int:
    """Hand outbox ids to the broker (the default queue unless ``queue``),
    EMAIL_BATCH_SIZE to a message; return how many were handed over. A
    broker that is down is logged and otherwise ignored: those rows stay
    pending and the sweeper queues them again."""
    send_emails = current_app.tasks[SEND_EMAILS_TASK]
    # The queue to publish to the short way, or None: apply_async for every batch.
    at_once = queue if queue is not None and countdown is None and _may_publish_at_once(send_emails) else None
    handed, size = 0, settings.EMAIL_BATCH_SIZE
    for start in range(0, len(email_ids), size):
        batch = list(email_ids[start : start + size])
        try:
            if at_once is not None:
                _publish_at_once(send_emails, batch, at_once)
            else:
                send_emails.apply_async(args=[batch], countdown=countdown, queue=queue)
        except Exception as exc:  # kombu raises many kinds when the broker is down
            logger.warning(
                "could not queue %s emails, the sweeper will: %s",
                len(email_ids) - handed,
                type(exc).__name__,
            )
            break  # the rest would wait for the same broker in vain
        handed += len(batch)
    return handed


def _may_publish_at_once(task: Any) -> bool:
    """Whether _publish_at_once puts on the broker what apply_async would:
    not run eagerly (the tests), not from inside a task (whose id Celery
    writes into the message as its parent), no sent event asked for."""
    app = task.app
    return not (app.conf.task_always_eager or _options(app).sent_event or app.current_worker_task)


@dataclass(frozen=True)
class _Options:
    """What Celery's send_task reads from its settings for every message,
    read once per process: none of them changes after the process has
    started. Each read goes through Django's settings first, and misses
    there; with Celery's saferepr of the arguments (below) they were 7 % of
    a valid submission's instructions (bench.instructions)."""

    sent_event: bool
    delivery_mode: Any
    pool_timeout: float | None
    publish: dict[str, Any]


@functools.cache
def _options(app: Any) -> _Options:
    conf = app.conf
    return _Options(
        sent_event=bool(conf.task_send_sent_event),
        delivery_mode=conf.task_default_delivery_mode,
        pool_timeout=conf.broker_pool_acquire_timeout,
        publish={
            "serializer": conf.task_serializer,
            "compression": conf.task_compression,
            "retry": conf.task_publish_retry,
            "retry_policy": dict(conf.task_publish_retry_policy or {}),
        },
    )


def _publish_at_once(task: Any, email_ids: list[int], queue: str) -> None:
    """``task.apply_async(args=[email_ids], queue=queue)`` as it reaches the
    broker: the message Celery builds for it (``amqp.as_task_v2``), sent by
    kombu to that queue with Celery's serializer, delivery mode, declaration
    and publish-retry policy. What is left out is the rest of Celery's
    ``send_task`` — the router, merging the task's options, the publish
    signals, a dozen settings read through Django's — which cost about as
    much as the publish. A submission publishes on every request, so it
    takes this way when _may_publish_at_once says it may;
    tests/test_publish.py compares what reaches Redis both ways."""
    app = task.app
    options = _options(app)
    args = [email_ids]
    # Celery's saferepr of a list of ids is its repr, up to its maximum size.
    argsrepr = repr(args)
    headers, properties, body, _ = app.amqp.as_task_v2(
        uuid(),
        task.name,
        args=args,
        kwargs={},
        reply_to=app.thread_oid,
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
        ignore_result=task.ignore_result,
        argsrepr=argsrepr if len(argsrepr) <= app.amqp.argsrepr_maxsize else None,
        kwargsrepr="{}",
    )
    declared = app.amqp.queues[queue]
    # As app.producer_or_acquire() takes one.
    with app.producer_pool.acquire(block=True, timeout=options.pool_timeout) as producer:
        producer.publish(
            body,
            exchange="",  # a direct exchange's queue by name, as Celery sends it
            routing_key=queue,
            delivery_mode=declared.exchange.delivery_mode or options.delivery_mode,
            declare=[declared],
            headers=headers,
            **options.publish,
            **properties,
        )


def publish_by_queue(queued: Sequence[tuple[int, str]]) -> int:
    """Publish (id, kind) pairs, a patient's emails to the queue workers take
    from first and the others to the default queue, each queue's in batches;
    return how many were handed over. The sweeper's way: a backlog's staff
    emails wait behind every patient's."""
    patient = [email_id for email_id, kind in queued if kind in PATIENT_EMAIL_KINDS]
    others = [email_id for email_id, kind in queued if kind not in PATIENT_EMAIL_KINDS]
    handed = email_publish(email_ids=patient, queue=PATIENT_EMAIL_QUEUE) if patient else 0
    if handed < len(patient):
        return handed  # the broker is down: the rest would wait for it in vain
    return handed + (email_publish(email_ids=others) if others else 0)


def publish_together(queued: Sequence[tuple[int, str]]) -> int:
    """Publish the (id, kind) pairs one transaction queued in as few
    messages as EMAIL_BATCH_SIZE allows, a patient's emails first; a message
    with a patient's email in it goes to the queue workers take from first,
    one of staff emails only to the default queue. Return how many were
    handed over.

    A submission's acknowledgment and staff notice are one message (one
    publish, one claim, one SMTP connection), the acknowledgment sent first;
    the notice no longer waits for a separate message on the default queue."""
    ordered = sorted(queued, key=lambda pair: pair[1] not in PATIENT_EMAIL_KINDS)
    handed, size = 0, settings.EMAIL_BATCH_SIZE
    for start in range(0, len(ordered), size):
        batch = ordered[start : start + size]
        to_patient = any(kind in PATIENT_EMAIL_KINDS for _, kind in batch)
        sent = email_publish(
            email_ids=[email_id for email_id, _ in batch], queue=PATIENT_EMAIL_QUEUE if to_patient else None
        )
        handed += sent
        if sent < len(batch):
            break  # the broker is down: the sweeper queues the rest
    return handed
