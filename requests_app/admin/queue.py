"""The staff queue: the request list, its filters, its search and its bulk
actions; ``ResetRequestAdmin`` puts it together with the request's page
(request_page.py) and the CSV export (export.py)."""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .. import services
from ..exceptions import WorkflowError
from ..formatting import format_age, format_when, person_name
from ..models import CloseReason, Reason, ResetRequest, Status
from ..phones import searched_phone
from ..practice_time import week_start
from ..references import reference_q
from ..selectors import is_overdue, overdue_q
from ..working_hours import add_working_hours
from .action_pages import acting_user
from .export import EXPORT_URL_NAME, ExportMixin
from .paginator import CappedCountPaginator
from .request_page import RequestPageMixin

# A bulk action touches at most this many requests: each one is its own
# service call (and maybe an email), and "select all 40,000" is a slip.
BULK_LIMIT = 200
# The list's words for the reasons; the patient-facing labels are sentences.
REASON_SHORT = {
    Reason.LINK_EXPIRED: "Link expired",
    Reason.NEVER_RECEIVED: "No email",
    Reason.SECURITY_CODE: "Security code",
    Reason.SHARED_ACCOUNT: "Shared login",
    Reason.OTHER: "Other",
}
STATUS_SHORT = {Status.WAITING: "Waiting"}
# "Due soon" mark: due within this many working hours.
DUE_SOON_HOURS = 4
# The list filter's value for "the email address does not work".
UNDELIVERABLE = "does_not_work"


# --- List filters -----------------------------------------------------------


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Overdue"), ("no", "Not overdue")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> QuerySet[ResetRequest]:
        if self.value() == "yes":
            # is_open adds nothing to the rule but lets the database use the
            # partial index rr_overdue (due_at, is_open).
            return queryset.filter(overdue_q(), is_open=True)
        if self.value() == "no":
            return queryset.exclude(overdue_q())
        return queryset


class AssigneeFilter(admin.SimpleListFilter):
    title = "assignee"
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("me", "Assigned to me"), ("nobody", "Unassigned")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> QuerySet[ResetRequest]:
        if self.value() == "me":
            return queryset.filter(assignee=request.user.pk)
        if self.value() == "nobody":
            return queryset.filter(assignee__isnull=True)
        return queryset


class StateFilter(admin.SimpleListFilter):
    """Open or ended, and ended this week: where the dashboard's counts of
    open requests and of those resolved this week lead."""

    title = "open or ended"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("ended", "Ended"), ("ended_this_week", "Ended this week")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> QuerySet[ResetRequest]:
        if self.value() == "open":
            return queryset.filter(is_open=True)
        if self.value() == "ended":
            return queryset.filter(is_open=False)
        if self.value() == "ended_this_week":
            return queryset.filter(ended_at__gte=week_start())
        return queryset


class EmailAddressFilter(admin.SimpleListFilter):
    """The requests whose patient's email bounced, was refused or marked as
    spam (delivery_feedback.py), open or ended: the front desk calls the
    patient. Where the dashboard's tile leads (with state=open)."""

    title = "email address"
    parameter_name = "email_address"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(UNDELIVERABLE, "Does not work — call the patient")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> QuerySet[ResetRequest]:
        if self.value() == UNDELIVERABLE:
            return queryset.filter(email_undeliverable=True)
        return queryset


# --- Search: one indexed lookup where the term says what it is --------------


def search_q(term: str) -> Q:
    """What staff typed into the list's search box, as a filter: an email
    address (or its beginning), a reference (or its first characters), a
    phone number in any format, or a name's words (each the beginning of a
    first or last name)."""
    if "@" in term:
        # Emails are stored lower-case (forms.clean_email).
        email = term.lower()
        if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            return Q(email=email)
        return Q(email__startswith=email)
    by_reference = reference_q(term)
    wanted = [by_reference] if by_reference is not None else []
    phone = searched_phone(term)
    if phone is not None:
        wanted.append(Q(phone=phone))
    else:
        words = [word for word in re.split(r"[\s,]+", term) if word]
        by_name = Q()
        for word in words:
            by_name &= Q(first_name__istartswith=word) | Q(last_name__istartswith=word)
        wanted.append(by_name)
        if len(words) == 1:
            wanted.append(Q(email__startswith=term.lower()))
    return functools.reduce(operator.or_, wanted)


# --- The reset request admin ------------------------------------------------


@admin.register(ResetRequest)
class ResetRequestAdmin(ExportMixin, RequestPageMixin, admin.ModelAdmin):
    # The columns staff scan first come first: on a narrow screen the last
    # ones scroll.
    list_display = (
        "reference",
        "patient",
        "status_badge",
        "due",
        "age",
        "assignee_name",
        "reason_short",
    )
    list_display_links = ("reference",)
    list_filter = ("status", StateFilter, "reason", OverdueFilter, AssigneeFilter, EmailAddressFilter)
    list_select_related = ("assignee",)
    list_per_page = 50
    # Only orderings an index serves.
    sortable_by = ("reference", "patient", "reason_short", "status_badge", "age")
    # No COUNT(*) of the whole table, no per-filter counts.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    # The search itself is get_search_results(); this only turns the box on.
    search_fields = ("reference", "first_name", "last_name", "email", "phone")
    search_help_text = "Reference (K7QM-3XTD or k7qm3xtd), name, email or phone (any format)."
    actions = ["assign_to_me", "start", "close_as_duplicate", "close_as_spam"]
    view_on_site = False
    readonly_fields = (
        "first_name",
        "last_name",
        "date_of_birth",
        "email",
        "phone",
        "reason",
        "appointment_date",
        "details",
        "ended_at",
        "outcome",
        "close_reason",
    )

    def get_urls(self) -> list[URLPattern]:
        export = path("export.csv", self.admin_site.admin_view(self.export_view), name=EXPORT_URL_NAME)
        return [export, *self.action_urls(), *super().get_urls()]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # Submitted, due, status and assignee lead the page in its own panel;
        # the end of a request is shown once it has one.
        ended = [name for name in ("ended_at", "outcome", "close_reason") if obj is not None and getattr(obj, name)]
        return (
            ("Patient", {"fields": (("first_name", "last_name"), "date_of_birth", ("email", "phone"))}),
            ("Request", {"fields": ("reason", "appointment_date", "details", *ended)}),
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Reset requests", **(extra_context or {})})

    # --- Permissions: requests come from patients and are never deleted.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # --- List columns

    @admin.display(description="Patient", ordering="last_name")
    def patient(self, obj: ResetRequest) -> str:
        """The name, and under it the mark of an email address that does
        not work (such a request comes first in the queue while open)."""
        if obj.email_undeliverable:
            return format_html(
                '{} <span class="rr-badge rr-undeliverable-mark" title="{}">{}</span>',
                obj.patient_name,
                "The email provider reported that an email to this address bounced, was refused or marked as spam",
                "Email does not work — call the patient",
            )
        return obj.patient_name

    @admin.display(description="Reason", ordering="reason")
    def reason_short(self, obj: ResetRequest) -> SafeString:
        return format_html(
            '<span title="{}">{}</span>', obj.get_reason_display(), REASON_SHORT.get(Reason(obj.reason), obj.reason)
        )

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: ResetRequest) -> SafeString:
        return format_html(
            '<span class="rr-badge rr-status-{}" title="{}">{}</span>',
            obj.status,
            obj.get_status_display(),
            STATUS_SHORT.get(Status(obj.status), obj.get_status_display()),
        )

    @admin.display(description="Age", ordering="-submitted_at")
    def age(self, obj: ResetRequest) -> str:
        return format_age(timezone.now() - obj.submitted_at)

    @admin.display(description="Due")
    def due(self, obj: ResetRequest) -> str:
        """The due time, led by the overdue mark, so the two read together
        and the mark stays in view on a narrow screen."""
        if not obj.is_open:
            return "—"
        if obj.status == Status.WAITING:
            return mark_safe('<span class="rr-quiet" title="The due clock is paused while waiting">paused</span>')
        now = timezone.now()
        if is_overdue(obj, now):
            return format_html(
                '<span class="rr-badge rr-overdue" title="Past its due time by {}">Overdue</span> {}',
                format_age(now - obj.due_at),
                format_when(obj.due_at),
            )
        if obj.due_at < add_working_hours(now, DUE_SOON_HOURS):
            return format_html('<span class="rr-badge rr-due-soon">Due soon</span> {}', format_when(obj.due_at))
        return format_when(obj.due_at)

    @admin.display(description="Assignee", ordering="assignee__username")
    def assignee_name(self, obj: ResetRequest) -> str:
        return person_name(obj.assignee) or "—"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ResetRequest], search_term: str
    ) -> tuple[QuerySet[ResetRequest], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(search_q(term)), False

    # --- Bulk actions: each row through the service, each result reported

    def _bulk(
        self,
        request: HttpRequest,
        queryset: QuerySet[ResetRequest],
        *,
        perform: Callable[[int], Any],
        done: str,
        skip: Callable[[int | None], str | None] | None = None,
    ) -> None:
        rows = list(queryset.order_by().values_list("pk", "reference", "assignee_id")[: BULK_LIMIT + 1])
        if len(rows) > BULK_LIMIT:
            self.message_user(
                request,
                f"Select at most {BULK_LIMIT} requests at a time; nothing was changed.",
                messages.ERROR,
            )
            return
        succeeded = []
        for pk, reference, assignee_id in rows:
            refusal = skip(assignee_id) if skip else None
            if refusal:
                self.message_user(request, f"{reference}: {refusal}", messages.ERROR)
                continue
            try:
                perform(pk)
            except WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                succeeded.append(reference)
        if succeeded:
            noun = "request" if len(succeeded) == 1 else "requests"
            self.message_user(request, f"{done} {len(succeeded)} {noun}: {', '.join(succeeded)}.", messages.SUCCESS)

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> None:
        user = acting_user(request)

        def taken_by_someone_else(assignee_id: int | None) -> str | None:
            if assignee_id is not None and assignee_id != user.pk:
                return "assigned to someone else; open it to take it over."
            return None

        self._bulk(
            request,
            queryset,
            perform=lambda pk: services.reset_assign(reset_id=pk, assignee=user, actor=user),
            done="Assigned to you",
            skip=taken_by_someone_else,
        )

    @admin.action(description="Start (new → in progress)", permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> None:
        user = acting_user(request)
        self._bulk(request, queryset, perform=lambda pk: services.reset_start(reset_id=pk, actor=user), done="Started")

    @admin.action(description="Close as duplicate…", permissions=["change"])
    def close_as_duplicate(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> HttpResponse | None:
        return self._bulk_close(request, queryset, reason=CloseReason.DUPLICATE, action="close_as_duplicate")

    @admin.action(description="Close as spam (no email)…", permissions=["change"])
    def close_as_spam(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> HttpResponse | None:
        return self._bulk_close(request, queryset, reason=CloseReason.SPAM, action="close_as_spam")

    def _bulk_close(
        self, request: HttpRequest, queryset: QuerySet[ResetRequest], *, reason: str, action: str
    ) -> HttpResponse | None:
        """A close of ticked requests ends them for their patients: first a
        page naming each one, and only its "Yes" closes them."""
        label = CloseReason(reason).label.lower()
        if request.POST.get("confirmed") != "yes":
            selected = list(queryset.select_related("assignee")[: BULK_LIMIT + 1])
            if len(selected) > BULK_LIMIT:
                message = f"Select at most {BULK_LIMIT} requests at a time; nothing was changed."
                self.message_user(request, message, messages.ERROR)
                return None
            return TemplateResponse(
                request,
                "admin/requests_app/resetrequest/bulk_close_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "title": f"Close {len(selected)} request{'s' if len(selected) != 1 else ''} as {label}?",
                    "requests": selected,
                    "action": action,
                    "emails_patient": reason != CloseReason.SPAM,
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                },
            )
        user = acting_user(request)
        self._bulk(
            request,
            queryset,
            perform=lambda pk: services.reset_close(reset_id=pk, actor=user, reason=reason),
            done=f"Closed as {label}",
        )
        return None
