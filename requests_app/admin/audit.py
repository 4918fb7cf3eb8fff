"""The record of CSV exports, for an auditor: who took which list, when,
and how many rows. Read-only for everyone, superusers included; seen by
superusers and by whoever holds ``view_exportrecord`` (a practice manager),
which the staff group does not (setup_staff_group)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.http import HttpRequest

from ..formatting import format_when, person_name
from ..models import ExportRecord
from .read_only import ReadOnlyAdmin


@admin.register(ExportRecord)
class ExportRecordAdmin(ReadOnlyAdmin):
    list_display = ("when", "who", "rows", "filter")
    list_display_links = ("when",)
    list_select_related = ("exported_by",)
    list_per_page = 50
    show_full_result_count = False
    actions = None
    fields = ("exported_at", "exported_by", "query", "rows")

    @admin.display(description="When", ordering="-exported_at")
    def when(self, obj: ExportRecord) -> str:
        return format_when(obj.exported_at)

    @admin.display(description="Who", ordering="exported_by__username")
    def who(self, obj: ExportRecord) -> str:
        return person_name(obj.exported_by)

    @admin.display(description="Filter (the list's query string)")
    def filter(self, obj: ExportRecord) -> str:
        return obj.query or "(the whole list)"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only the view permission (the admin would also take the change
        # one, which nobody is meant to have).
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('view', opts)}")
