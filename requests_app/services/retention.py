"""Retention: personal data is erased RETENTION_DAYS after a request ended."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import FamilyMember, OutboundEmail, RequestEvent, ResetRequest

logger = logging.getLogger(__name__)


def resets_purge_expired(*, batch_size: int = 500) -> int:
    """Erase the personal data of requests that ended more than
    RETENTION_DAYS ago: names, date of birth, contact details, free text,
    family members, timeline texts, email addresses and the status link.
    The rows and their timeline skeleton stay, for counts and audit.
    Idempotent; each batch is one transaction."""
    cutoff = timezone.now() - timedelta(days=settings.RETENTION_DAYS)
    purged = 0
    while True:
        with transaction.atomic():
            ids = list(
                ResetRequest.objects.select_for_update(skip_locked=True)
                .filter(ended_at__lt=cutoff, personal_data_purged_at__isnull=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return purged
            now = timezone.now()
            ResetRequest.objects.filter(pk__in=ids).update(
                first_name="",
                last_name="",
                date_of_birth=None,
                email="",
                phone="",
                details="",
                status_secret="",
                personal_data_purged_at=now,
            )
            FamilyMember.objects.filter(reset_id__in=ids).delete()
            RequestEvent.objects.filter(reset_id__in=ids).erase_messages()
            OutboundEmail.objects.filter(reset_id__in=ids).update(to="", last_error="")
            RequestEvent.objects.bulk_create(
                RequestEvent(reset_id=pk, kind=RequestEvent.Kind.PURGED, created_at=now) for pk in ids
            )
            purged += len(ids)
        logger.info("purged personal data of %s requests", len(ids))
