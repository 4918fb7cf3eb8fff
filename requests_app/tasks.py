"""Celery tasks: thin, take ids only (never personal data), safe to run twice."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task
def send_emails(email_ids: list[int]) -> dict[str, str]:
    """Send outbox emails over one SMTP connection. Idempotent: the service
    claims each row first, so a second delivery of this message sends
    nothing. An email that failed for a while is queued again on its own,
    after its own backoff; if that message is lost (broker down), the
    sweeper finds the row."""
    results = services.email_send_many(email_ids=email_ids)
    for email_id, result in results.items():
        if result.retry_in is not None:
            services.email_publish(email_ids=[email_id], countdown=result.retry_in)
    return {str(email_id): result.state for email_id, result in results.items()}


@shared_task
def send_email(email_id: int) -> dict[str, str]:
    """A message of the previous release (one id each, retries included):
    sent the same way. Remove once no such message can be left."""
    return send_emails(email_ids=[email_id])


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
