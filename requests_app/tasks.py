"""Celery tasks: thin, take ids only (never personal data), safe to run twice."""

from __future__ import annotations

from celery import shared_task
from celery.app.task import Task

from . import services


@shared_task(bind=True, max_retries=None)
def send_email(self: Task, email_id: int) -> str:
    """Send one outbox email. Idempotent: the service claims the row first,
    so a second delivery of this message sends nothing."""
    result = services.email_send(email_id=email_id)
    if result.retry_in is not None:
        # If this retry is lost (broker down), the sweeper finds the row.
        raise self.retry(countdown=result.retry_in)
    return result.state


@shared_task
def sweep_outbox() -> int:
    """Queue again pending emails whose publish or retry was lost."""
    return services.outbox_sweep()


@shared_task
def close_stale_waiting() -> int:
    """Close requests left waiting on the patient too long."""
    return services.requests_close_stale_waiting()


@shared_task
def queue_overdue_digest() -> bool:
    """The daily digest of overdue requests for staff."""
    return services.digest_queue_overdue() is not None


@shared_task
def purge_expired() -> int:
    """Erase personal data past the retention period."""
    return services.requests_purge_expired()
