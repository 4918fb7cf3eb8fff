"""Held submissions in the admin: read-only, released or deleted by staff.

A held submission looked automated (or came past the per-email limit with no
open request to join); a real patient may be among them, so each can be
released — filed as if just submitted — or deleted as spam, one at a time
or ticked in the list. Deleting asks for confirmation first, naming them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .. import services
from ..exceptions import WorkflowError
from ..formatting import format_when
from ..models import HeldSubmission
from .action_pages import acting_user
from .queue import BULK_LIMIT
from .read_only import ReadOnlyAdmin


@admin.register(HeldSubmission)
class HeldSubmissionAdmin(ReadOnlyAdmin):
    list_display = ("received", "why", "patient", "email", "reference")
    list_filter = ("why",)
    list_per_page = 100
    ordering = ("-received_at", "-pk")
    show_full_result_count = False
    search_fields = ("reference", "email", "last_name")
    search_help_text = "Reference, email address or last name."
    actions = ["release", "delete_as_spam"]
    fields = (
        "received_at",
        "why",
        "reference",
        "first_name",
        "last_name",
        "date_of_birth",
        "email",
        "phone",
        "appointment_date",
        "reason",
        "details",
        "family",
        "language",
    )
    readonly_fields = fields

    # Deleting is the "delete as spam" action, which names what it deletes
    # and asks first; releasing and deleting need the change permission.
    def has_release_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("requests_app.change_heldsubmission")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="Received", ordering="received_at")
    def received(self, obj: HeldSubmission) -> str:
        return format_when(obj.received_at)

    @admin.display(description="Patient")
    def patient(self, obj: HeldSubmission) -> str:
        return obj.patient_name

    def _ids(self, request: HttpRequest, queryset: QuerySet[HeldSubmission]) -> list[int] | None:
        ids = list(queryset.values_list("pk", flat=True)[: BULK_LIMIT + 1])
        if len(ids) > BULK_LIMIT:
            self.message_user(request, f"Select at most {BULK_LIMIT} at a time; nothing was changed.", messages.ERROR)
            return None
        return ids

    @admin.action(description="Release: file as a request (the patient is emailed)", permissions=["release"])
    def release(self, request: HttpRequest, queryset: QuerySet[HeldSubmission]) -> None:
        ids = self._ids(request, queryset)
        if ids is None:
            return
        filed = []
        for held_id in ids:
            try:
                result = services.held_release(held_id=held_id, actor=acting_user(request))
            except WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                filed.append(result.reset.reference)
        if filed:
            self.message_user(request, f"Released and filed: {', '.join(filed)}.", messages.SUCCESS)

    @admin.action(description="Delete as spam…", permissions=["release"])
    def delete_as_spam(self, request: HttpRequest, queryset: QuerySet[HeldSubmission]) -> HttpResponse | None:
        ids = self._ids(request, queryset)
        if ids is None:
            return None
        if request.POST.get("confirmed") != "yes":
            return TemplateResponse(
                request,
                "admin/requests_app/heldsubmission/delete_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "title": "Delete these held submissions as spam?",
                    "held": queryset.filter(pk__in=ids).order_by("-received_at"),
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                },
            )
        deleted = services.held_delete(held_ids=ids, actor=acting_user(request))
        self.message_user(request, f"Deleted {deleted} held submission{'s' if deleted != 1 else ''}.", messages.SUCCESS)
        return None

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Held submissions", **(extra_context or {})})
