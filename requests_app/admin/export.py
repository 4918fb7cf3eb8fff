"""The request list as CSV, for reporting."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control

from ..formatting import person_name
from ..models import ExportRecord, ResetRequest
from ..practice_time import practice_zone
from .action_pages import acting_user

logger = logging.getLogger(__name__)

# Reporting columns: everything but the date of birth and the patient's
# free-text details (they may hold medical information).
CSV_HEADER = [
    "reference",
    "status",
    "reason",
    "appointment_date",
    "submitted_at",
    "due_at",
    "ended_at",
    "outcome",
    "close_reason",
    "assignee",
    "identity_verified_at",
    "first_name",
    "last_name",
    "email",
    "phone",
]


class _Echo:
    """csv.writer writes into this; each row comes straight back out."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value: Any, tz: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return timezone.localtime(value, tz).isoformat(timespec="minutes")
    text = str(value)
    # A cell a spreadsheet would run as a formula (text a patient typed)
    # is kept as text; a phone number in E.164 form is left as it is.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not re.fullmatch(r"\+\d+", text):
        return "'" + text
    return text


def csv_rows(queryset: QuerySet[ResetRequest]) -> Iterator[list[str]]:
    tz = practice_zone()
    yield CSV_HEADER
    for rr in queryset.select_related("assignee").iterator(chunk_size=2000):
        values = [
            rr.reference,
            rr.status,
            rr.reason,
            rr.appointment_date.isoformat() if rr.appointment_date else "",
            rr.submitted_at,
            rr.due_at,
            rr.ended_at,
            rr.outcome,
            rr.close_reason,
            person_name(rr.assignee),
            rr.identity_verified_at,
            rr.first_name,
            rr.last_name,
            rr.email,
            rr.phone,
        ]
        yield [_csv_cell(value, tz) for value in values]


class ExportChangeList(ChangeList):
    """The list's filters, search and order for the CSV export, which only
    needs the queryset: no count and no page of rows."""

    def get_results(self, request: HttpRequest) -> None:
        pass


EXPORT_URL_NAME = "requests_app_resetrequest_export"


class ExportMixin(admin.ModelAdmin):
    """``export.csv`` beside the request list: the list as it is filtered and
    searched."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        match = request.resolver_match
        if match is not None and match.url_name == EXPORT_URL_NAME:
            return ExportChangeList
        return super().get_changelist(request, **kwargs)

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """Streamed row by row, so that a hundred thousand requests never sit
        in memory. Each export is recorded (ExportRecord) for an auditor."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:requests_app_resetrequest_changelist") + "?e=1")
        queryset = changelist.queryset
        # The record is written here, before the first row leaves, with the
        # rows counted up front (one COUNT over the filtered list): a stream
        # can be broken off half-way, and whoever started it may still hold
        # most of the file, so what an auditor needs is who took which list,
        # even if the download broke. Counting at the end of the stream
        # would leave no record of exactly those downloads. A request
        # submitted or moved in the instant between the count and the
        # stream's first fetch can make the file differ from the count by
        # that one. The COUNT is the export's own, once per download, not
        # the list's (which caps its count, being loaded all day).
        ExportRecord.objects.create(
            exported_by=acting_user(request),
            exported_at=timezone.now(),
            # The list's filters, search and order as the export applied
            # them; the page number, which it ignores, is left out.
            query=changelist.get_query_string()[1:],
            rows=queryset.count(),
        )
        writer = csv.writer(_Echo())
        response = StreamingHttpResponse(
            (writer.writerow(row) for row in csv_rows(queryset)),
            content_type="text/csv; charset=utf-8",
        )
        stamp = timezone.localtime(timezone.now(), practice_zone()).strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="reset-requests-{stamp}.csv"'
        patch_cache_control(response, private=True, no_store=True)
        # No personal data in the log: who exported, not what.
        logger.info("reset requests exported as csv by user id=%s", request.user.pk)
        return response
