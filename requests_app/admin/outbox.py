"""The outbox in the admin: read-only, with "send again" for staff."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from ..exceptions import WorkflowError
from ..formatting import format_when
from ..models import OutboundEmail, ResetRequest
from ..outbox.queue import email_send_again
from ..references import reference_q
from .action_pages import acting_user
from .paginator import CappedCountPaginator
from .queue import BULK_LIMIT
from .read_only import ReadOnlyAdmin


@admin.register(OutboundEmail)
class OutboundEmailAdmin(ReadOnlyAdmin):
    list_display = ("queued", "kind", "to", "request_reference", "state", "attempts", "last_error", "sent")
    list_filter = ("state", "kind")
    list_select_related = ("reset",)
    list_per_page = 100
    # Newest first by primary key: served by the primary key's index, where
    # the model's ordering on created_at has none.
    ordering = ("-pk",)
    sortable_by = ()
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    search_fields = ("to", "reset__reference")
    search_help_text = "Request reference or the exact address."
    actions = ["send_again"]
    fields = (
        "reset",
        "kind",
        "to",
        "state",
        "attempts",
        "last_error",
        "created_at",
        "claimed_at",
        "next_attempt_at",
        "sent_at",
    )
    readonly_fields = fields

    def has_send_again_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("requests_app.change_resetrequest")

    @admin.action(description="Send again (as a new email)", permissions=["send_again"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[OutboundEmail]) -> None:
        queued = []
        for email_id in queryset.values_list("pk", flat=True)[:BULK_LIMIT]:
            try:
                email_send_again(email_id=email_id, actor=acting_user(request))
            except WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                queued.append(f"#{email_id}")
        if queued:
            self.message_user(request, f"Queued again as new emails: {', '.join(queued)}.", messages.SUCCESS)

    @admin.display(description="Queued")
    def queued(self, obj: OutboundEmail) -> str:
        return format_when(obj.created_at)

    @admin.display(description="Sent")
    def sent(self, obj: OutboundEmail) -> str:
        return format_when(obj.sent_at) or "—"

    @admin.display(description="Request")
    def request_reference(self, obj: OutboundEmail) -> str:
        if obj.reset is None:
            return "—"
        url = reverse("admin:requests_app_resetrequest_change", args=[obj.reset_id])
        return format_html('<a href="{}">{}</a>', url, obj.reset.reference)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OutboundEmail], search_term: str
    ) -> tuple[QuerySet[OutboundEmail], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        wanted = Q(to=term.lower())
        by_reference = reference_q(term)
        if by_reference is not None:
            wanted |= Q(reset__in=ResetRequest.objects.filter(by_reference).values("pk"))
        return queryset.filter(wanted), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Outbound emails", **(extra_context or {})})
