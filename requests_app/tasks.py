"""Celery tasks: thin, take ids only (never personal data), safe to run twice.

The only module that runs the services and the outbox for Celery; nothing
imports it back (the outbox publishes ``send_emails`` by name).
"""

from __future__ import annotations

from celery import shared_task

from . import services
from .outbox.publish import email_publish
from .outbox.send import email_send_many
from .outbox.sweep import outbox_sweep


@shared_task
def send_emails(email_ids: list[int]) -> dict[str, str]:
    """Send outbox emails over one SMTP connection. Idempotent: the outbox
    claims each row first, so a second delivery of this message sends
    nothing. An email that failed for a while is queued again on its own,
    after its own backoff; if that message is lost (broker down), the
    sweeper finds the row."""
    results = email_send_many(email_ids=email_ids)
    for email_id, result in results.items():
        if result.retry_in is not None:
            email_publish(email_ids=[email_id], countdown=result.retry_in)
    return {str(email_id): result.state for email_id, result in results.items()}


@shared_task
def sweep_outbox() -> int:
    """Queue again pending emails whose publish or retry was lost."""
    return outbox_sweep()


@shared_task
def close_stale_waiting() -> int:
    """Close requests left waiting on the patient too long."""
    return services.resets_close_stale_waiting()


@shared_task
def queue_overdue_digest() -> bool:
    """The daily digest of overdue requests for staff."""
    return services.digest_queue_overdue() is not None


@shared_task
def purge_expired() -> int:
    """Erase personal data past the retention periods: of ended requests,
    and held submissions never released."""
    return services.resets_purge_expired() + services.held_purge_expired()
