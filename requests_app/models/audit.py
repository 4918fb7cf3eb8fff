"""Records for an auditor: the CSV exports of the request list."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ExportRecord(models.Model):
    """One CSV export of the request list: who, when, with which filter and
    how many rows, for an auditor. Written before the first row leaves."""

    exported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    exported_at = models.DateTimeField()
    # The list's query string (filters, search, order) as the export saw it.
    query = models.TextField(blank=True)
    rows = models.PositiveIntegerField()

    class Meta:
        ordering = ["-exported_at", "-pk"]

    def __str__(self) -> str:
        return f"Export #{self.pk}"
