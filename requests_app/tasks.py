"""Celery tasks: thin, take ids only (never personal data), safe to run twice."""

from __future__ import annotations

from celery import shared_task
from celery.app.task import Task

from . import services


@shared_task(bind=True, max_retries=None)
def send_emails(self: Task, email_ids: list[int]) -> dict[str, str]:
    """Send outbox emails over one SMTP connection. Idempotent: the service
    claims each row first, so a second delivery of this message sends
    nothing. Emails that failed for a while are retried together after the
    shortest of their backoffs."""
    results = services.email_send_many(email_ids=email_ids)
    retry = {email_id: result.retry_in for email_id, result in results.items() if result.retry_in is not None}
    if retry:
        # If this retry is lost (broker down), the sweeper finds the rows.
        raise self.retry(args=[list(retry)], countdown=min(retry.values()))
    return {str(email_id): result.state for email_id, result in results.items()}


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
