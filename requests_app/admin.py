"""The staff side: the queue of reset requests, the workflow on each request's
page, and a read-only view of the outbox.

Thin on purpose: every change goes through a function of ``services.py``,
which knows the allowed moves, writes the timeline event with the acting
user and queues the emails. Nothing here sets ``status``.
"""

from __future__ import annotations

import csv
import functools
import logging
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from . import admin_forms, selectors, services
from .models import REFERENCE_ALPHABET, FamilyMember, OutboundEmail, RequestEvent, ResetRequest, normalize_reference
from .practice_time import practice_zone

logger = logging.getLogger(__name__)

Status = ResetRequest.Status

# A bulk action touches at most this many requests: each one is its own
# service call (and maybe an email), and "select all 40,000" is a slip.
BULK_LIMIT = 200
# The change page shows this many of the newest timeline events.
TIMELINE_LIMIT = 300
EMAILS_LIMIT = 100
# The list's words for the reasons; the patient-facing labels are sentences.
REASON_SHORT = {
    ResetRequest.Reason.LINK_EXPIRED: "Link expired",
    ResetRequest.Reason.NEVER_RECEIVED: "No email",
    ResetRequest.Reason.SECURITY_CODE: "Security code",
    ResetRequest.Reason.SHARED_ACCOUNT: "Shared login",
    ResetRequest.Reason.OTHER: "Other",
}
STATUS_SHORT = {Status.WAITING: "Waiting"}
# "Due soon" mark: due within this many hours.
DUE_SOON_HOURS = 4


# --- Helpers ----------------------------------------------------------------


def person_name(user: Any) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


def format_age(delta: timedelta) -> str:
    """3 d 4 h, 5 h, 40 min."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h"
    return f"{minutes} min"


def format_when(value: datetime | None) -> str:
    if value is None:
        return ""
    local = timezone.localtime(value)
    return f"{local:%b} {local.day} {local:%H:%M}"


def is_overdue(request: ResetRequest, now: datetime) -> bool:
    """The same rule as selectors.overdue_q(), for one row already loaded."""
    return request.status in (Status.NEW, Status.IN_PROGRESS) and request.due_at < now


def status_label(code: str) -> str:
    return ResetRequest.Status(code).label if code in ResetRequest.Status.values else code


def normalize_phone(text: str) -> str | None:
    """A searched phone number in the E.164 form requests store (the same
    parsing as forms.ResetRequestForm.clean_phone), or None."""
    if not re.fullmatch(r"[\d\s()+.\-]+", text) or sum(ch.isdigit() for ch in text) < 7:
        return None
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def reference_q(text: str) -> Q | None:
    """A whole reference (any case, with or without the dash or spaces) or its
    first four or more characters."""
    compact = "".join(ch for ch in text.upper() if ch.isalnum())
    if not 4 <= len(compact) <= 8 or any(ch not in REFERENCE_ALPHABET for ch in compact):
        return None
    if len(compact) == 8:
        return Q(reference=normalize_reference(compact))
    prefix = compact[:4] + ("-" + compact[4:] if len(compact) > 4 else "")
    return Q(reference__startswith=prefix)


class CappedCountPaginator(Paginator):
    """Counts at most LIMIT + 1 rows. An exact COUNT(*) over a million
    requests on every page load costs more than the page itself, and nobody
    pages past the first thousands: they filter or search."""

    LIMIT = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.LIMIT + 1].count()

    @property
    def count_is_capped(self) -> bool:
        return self.count > self.LIMIT


class ExportChangeList(ChangeList):
    """The list's filters, search and order for the CSV export, which only
    needs the queryset: no count and no page of rows."""

    def get_results(self, request: HttpRequest) -> None:
        pass


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
            return queryset.filter(selectors.overdue_q(), is_open=True)
        if self.value() == "no":
            return queryset.exclude(selectors.overdue_q())
        return queryset


class AssigneeFilter(admin.SimpleListFilter):
    title = "assignee"
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("me", "Assigned to me"), ("nobody", "Unassigned")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> QuerySet[ResetRequest]:
        if self.value() == "me":
            return queryset.filter(assignee=request.user)
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
            return queryset.filter(ended_at__gte=selectors.week_start())
        return queryset


# --- Read-only pieces of the change page ------------------------------------


class FamilyMemberInline(admin.TabularInline):
    model = FamilyMember
    fields = ("first_name", "last_name", "date_of_birth")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "family member sharing the login"
    verbose_name_plural = "family members sharing the login"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Workflow moves ---------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One workflow page: its form, the service it calls, the words it uses."""

    name: str
    to_status: str
    form_class: type[forms.Form]
    perform: Callable[[ResetRequest, HttpRequest, dict[str, Any]], Any]
    done: Callable[[ResetRequest], str]
    submit: str


def _perform_start(obj: ResetRequest, request: HttpRequest, data: dict[str, Any]) -> Any:
    return services.request_start(request_id=obj.pk, actor=request.user, expected_status=data["expected_status"])


def _perform_wait(obj: ResetRequest, request: HttpRequest, data: dict[str, Any]) -> Any:
    return services.request_wait(
        request_id=obj.pk, actor=request.user, note=data["note"], expected_status=data["expected_status"]
    )


def _perform_resolve(obj: ResetRequest, request: HttpRequest, data: dict[str, Any]) -> Any:
    return services.request_resolve(
        request_id=obj.pk,
        actor=request.user,
        outcome=data["outcome"],
        note=data["note"],
        expected_status=data["expected_status"],
    )


def _perform_close(obj: ResetRequest, request: HttpRequest, data: dict[str, Any]) -> Any:
    return services.request_close(
        request_id=obj.pk,
        actor=request.user,
        reason=data["reason"],
        note=data["note"],
        expected_status=data["expected_status"],
    )


def _closed_message(obj: ResetRequest) -> str:
    obj.refresh_from_db(fields=["close_reason"])
    if obj.close_reason == ResetRequest.CloseReason.SPAM:
        return f"{obj.reference} is closed as spam; no email goes to the sender."
    return f"{obj.reference} is closed; the patient is emailed."


MOVES: dict[str, Move] = {
    move.name: move
    for move in (
        Move(
            name="start",
            to_status=Status.IN_PROGRESS,
            form_class=admin_forms.StartForm,
            perform=_perform_start,
            done=lambda obj: f"{obj.reference} is in progress.",
            submit="Start",
        ),
        Move(
            name="wait",
            to_status=Status.WAITING,
            form_class=admin_forms.WaitForm,
            perform=_perform_wait,
            done=lambda obj: f"{obj.reference} is waiting on the patient; the due clock is paused.",
            submit="Mark waiting",
        ),
        Move(
            name="resolve",
            to_status=Status.RESOLVED,
            form_class=admin_forms.ResolveForm,
            perform=_perform_resolve,
            done=lambda obj: f"{obj.reference} is resolved; the patient is emailed.",
            submit="Resolve",
        ),
        Move(
            name="close",
            to_status=Status.CLOSED,
            form_class=admin_forms.CloseForm,
            perform=_perform_close,
            done=_closed_message,
            submit="Close request",
        ),
    )
}

# The order of the buttons on the change page.
BUTTON_ORDER = [Status.IN_PROGRESS, Status.WAITING, Status.RESOLVED, Status.CLOSED]


def _button_for(obj: ResetRequest, to_status: str) -> dict[str, Any]:
    if to_status == Status.IN_PROGRESS:
        label = "Start" if obj.status == Status.NEW else "Patient answered: back to in progress"
        return {"move": "start", "label": label, "direct": True, "style": "default"}
    if to_status == Status.WAITING:
        return {"move": "wait", "label": "Mark waiting on patient…", "direct": False, "style": ""}
    if to_status == Status.RESOLVED:
        return {"move": "resolve", "label": "Resolve…", "direct": False, "style": "default"}
    return {"move": "close", "label": "Close…", "direct": False, "style": "danger"}


# --- CSV export -------------------------------------------------------------


class _Echo:
    """csv.writer writes into this; each row comes straight back out."""

    def write(self, value: str) -> str:
        return value


# Reporting columns: everything but the date of birth (SPEC) and the
# patient's free-text details (they may hold medical information).
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


# --- The reset request admin ------------------------------------------------


@admin.register(ResetRequest)
class ResetRequestAdmin(admin.ModelAdmin):
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
    list_filter = ("status", StateFilter, "reason", OverdueFilter, AssigneeFilter)
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
    inlines = [FamilyMemberInline]
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

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        # No empty "family members" table on the many requests without any.
        if obj is None or not obj.family_members.exists():
            return []
        return self.inlines

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # Submitted, due, status and assignee lead the page in its own panel;
        # the end of a request is shown once it has one.
        ended = [name for name in ("ended_at", "outcome", "close_reason") if obj is not None and getattr(obj, name)]
        return (
            ("Patient", {"fields": (("first_name", "last_name"), "date_of_birth", ("email", "phone"))}),
            ("Request", {"fields": ("reason", "appointment_date", "details", *ended)}),
        )

    # --- Permissions: requests come from patients and are never deleted.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # --- List columns

    @admin.display(description="Patient", ordering="last_name")
    def patient(self, obj: ResetRequest) -> str:
        return obj.patient_name

    @admin.display(description="Reason", ordering="reason")
    def reason_short(self, obj: ResetRequest) -> str:
        return format_html(
            '<span title="{}">{}</span>', obj.get_reason_display(), REASON_SHORT.get(obj.reason, obj.reason)
        )

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: ResetRequest) -> str:
        return format_html(
            '<span class="rr-badge rr-status-{}" title="{}">{}</span>',
            obj.status,
            obj.get_status_display(),
            STATUS_SHORT.get(obj.status, obj.get_status_display()),
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
        if obj.due_at < now + timedelta(hours=DUE_SOON_HOURS):
            return format_html('<span class="rr-badge rr-due-soon">Due soon</span> {}', format_when(obj.due_at))
        return format_when(obj.due_at)

    @admin.display(description="Assignee", ordering="assignee__username")
    def assignee_name(self, obj: ResetRequest) -> str:
        return person_name(obj.assignee) or "—"

    # --- Search: one indexed lookup where the term says what it is

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ResetRequest], search_term: str
    ) -> tuple[QuerySet[ResetRequest], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if "@" in term:
            # Emails are stored lower-case (forms.clean_email).
            email = term.lower()
            if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
                return queryset.filter(email=email), False
            return queryset.filter(email__startswith=email), False
        by_reference = reference_q(term)
        wanted = [by_reference] if by_reference is not None else []
        phone = normalize_phone(term)
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
        return queryset.filter(functools.reduce(operator.or_, wanted)), False

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
            except services.WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                succeeded.append(reference)
        if succeeded:
            noun = "request" if len(succeeded) == 1 else "requests"
            self.message_user(request, f"{done} {len(succeeded)} {noun}: {', '.join(succeeded)}.", messages.SUCCESS)

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> None:
        def taken_by_someone_else(assignee_id: int | None) -> str | None:
            if assignee_id is not None and assignee_id != request.user.pk:
                return "assigned to someone else; open it to take it over."
            return None

        self._bulk(
            request,
            queryset,
            perform=lambda pk: services.request_assign(request_id=pk, assignee=request.user, actor=request.user),
            done="Assigned to you",
            skip=taken_by_someone_else,
        )

    @admin.action(description="Start (new → in progress)", permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> None:
        self._bulk(
            request,
            queryset,
            perform=lambda pk: services.request_start(request_id=pk, actor=request.user),
            done="Started",
        )

    @admin.action(description="Close as duplicate", permissions=["change"])
    def close_as_duplicate(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> None:
        self._bulk(
            request,
            queryset,
            perform=lambda pk: services.request_close(
                request_id=pk, actor=request.user, reason=ResetRequest.CloseReason.DUPLICATE
            ),
            done="Closed as duplicate",
        )

    @admin.action(description="Close as spam (no email)", permissions=["change"])
    def close_as_spam(self, request: HttpRequest, queryset: QuerySet[ResetRequest]) -> None:
        self._bulk(
            request,
            queryset,
            perform=lambda pk: services.request_close(
                request_id=pk, actor=request.user, reason=ResetRequest.CloseReason.SPAM
            ),
            done="Closed as spam",
        )

    # --- Pages

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name

        def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return self.admin_site.admin_view(view)

        workflow = [
            path(
                f"<path:object_id>/{name}/",
                wrap(functools.partial(self.move_view, move=name)),
                name="{}_{}_{}".format(*info, name),
            )
            for name in MOVES
        ]
        return [
            path("export.csv", wrap(self.export_view), name="{}_{}_export".format(*info)),
            *workflow,
            path("<path:object_id>/assign/", wrap(self.assign_view), name="{}_{}_assign".format(*info)),
            path("<path:object_id>/identity/", wrap(self.identity_view), name="{}_{}_identity".format(*info)),
            path("<path:object_id>/note/", wrap(self.note_view), name="{}_{}_note".format(*info)),
            path("<path:object_id>/resend/", wrap(self.resend_view), name="{}_{}_resend".format(*info)),
            *super().get_urls(),
        ]

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        # The change page asks for its object twice (here, then the admin's
        # own view): one query per page, not two.
        cached = getattr(request, "_reset_request", None)
        if cached is not None and str(cached.pk) == str(object_id):
            return cached
        queryset = self.get_queryset(request).select_related("assignee", "identity_verified_by")
        try:
            obj = queryset.get(pk=ResetRequest._meta.pk.to_python(object_id))
        except (ResetRequest.DoesNotExist, ValidationError, ValueError):
            return None
        request._reset_request = obj  # type: ignore[attr-defined]
        return obj

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Reset requests", **(extra_context or {})})

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        match = request.resolver_match
        if match is not None and match.url_name == "requests_app_resetrequest_export":
            return ExportChangeList
        return super().get_changelist(request, **kwargs)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The list as it is filtered and searched, as CSV, streamed row by
        row so that a hundred thousand requests never sit in memory."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:requests_app_resetrequest_changelist") + "?e=1")
        writer = csv.writer(_Echo())
        response = StreamingHttpResponse(
            (writer.writerow(row) for row in csv_rows(changelist.queryset)),
            content_type="text/csv; charset=utf-8",
        )
        stamp = timezone.localtime(timezone.now(), practice_zone()).strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="reset-requests-{stamp}.csv"'
        patch_cache_control(response, private=True, no_store=True)
        # No personal data in the log: who exported, not what.
        logger.info("reset requests exported as csv by user id=%s", request.user.pk)
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The page saves nothing: every change is one of the workflow forms,
        # which post to their own views.
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET"])
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and self.has_view_or_change_permission(request, obj):
            if request.method == "GET":
                services.request_record_view(request_id=obj.pk, actor=request.user)
            extra_context = {
                **(extra_context or {}),
                "title": "Reset request",
                "subtitle": None,
                **self._workflow_context(request, obj),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, *args, **kwargs)

    def _workflow_context(self, request: HttpRequest, obj: ResetRequest) -> dict[str, Any]:
        now = timezone.now()
        can_work = self.has_change_permission(request, obj)
        buttons = []
        if can_work:
            buttons = [_button_for(obj, to) for to in BUTTON_ORDER if obj.can_move_to(to)]
            for button in buttons:
                button["url"] = self._url(button["move"], obj)
        events = list(obj.events.select_related("actor").order_by("-created_at", "-pk")[: TIMELINE_LIMIT + 1])
        truncated = len(events) > TIMELINE_LIMIT
        timeline = [
            {
                "kind": event.kind,
                "kind_label": event.get_kind_display(),
                "at": event.created_at,
                "who": person_name(event.actor) or self._unattended_actor(event),
                "from_status": status_label(event.from_status) if event.from_status else "",
                "to_status": status_label(event.to_status) if event.to_status else "",
                "message": event.message,
            }
            for event in reversed(events[:TIMELINE_LIMIT])
        ]
        return {
            "rr": obj,
            "rr_is_overdue": is_overdue(obj, now),
            "rr_overdue_by": format_age(now - obj.due_at),
            "rr_age": format_age(now - obj.submitted_at),
            "can_work": can_work,
            "can_note": can_work and request.user.has_perm("requests_app.add_requestevent"),
            "buttons": buttons,
            "assign_url": self._url("assign", obj),
            "resend_url": self._url("resend", obj),
            "identity_url": self._url("identity", obj),
            "note_url": self._url("note", obj),
            "can_take": can_work and obj.is_open and obj.assignee_id != request.user.pk,
            "identity_form": admin_forms.IdentityCheckForm(
                initial={
                    "dob": obj.identity_dob_matched,
                    "phone": obj.identity_phone_matched,
                    "email": obj.identity_email_matched,
                }
            ),
            "identity_matched": [
                label
                for label, matched in (
                    ("date of birth", obj.identity_dob_matched),
                    ("phone", obj.identity_phone_matched),
                    ("email", obj.identity_email_matched),
                )
                if matched
            ],
            "note_form": admin_forms.NoteForm(),
            "timeline": timeline,
            "timeline_truncated": truncated,
            "timeline_limit": TIMELINE_LIMIT,
            "emails": list(obj.emails.order_by("created_at", "pk")[:EMAILS_LIMIT]),
        }

    @staticmethod
    def _unattended_actor(event: RequestEvent) -> str:
        if event.kind in (RequestEvent.Kind.SUBMITTED, RequestEvent.Kind.DUPLICATE):
            return "patient"
        return "system"

    def _url(self, name: str, obj: ResetRequest) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=[obj.pk])

    def _change_url(self, obj: ResetRequest) -> str:
        return self._url("change", obj)

    def _object_for_work(self, request: HttpRequest, object_id: str) -> ResetRequest:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such reset request.")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def _page(self, request: HttpRequest, obj: ResetRequest, context: dict[str, Any]) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/requests_app/resetrequest/workflow_form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "app_label": self.opts.app_label,
                "has_view_permission": self.has_view_permission(request, obj),
                "original": obj,
                "rr": obj,
                "change_url": self._change_url(obj),
                "waiting_auto_close_days": settings.WAITING_AUTO_CLOSE_DAYS,
                **context,
            },
        )

    def _expected_from_query(self, request: HttpRequest, obj: ResetRequest) -> str:
        expected = request.GET.get("expected_status", "")
        return expected if expected in Status.values else obj.status

    def move_view(self, request: HttpRequest, object_id: str, move: str) -> HttpResponse:
        """A small page with the form of one move (start, wait, resolve,
        close). GET shows it; POST calls the service with the status the
        staff member saw, and reports the outcome on the request's page."""
        spec = MOVES[move]
        obj = self._object_for_work(request, object_id)
        change_url = self._change_url(obj)
        if request.method == "POST":
            form = spec.form_class(request.POST)
            if form.is_valid():
                try:
                    spec.perform(obj, request, form.cleaned_data)
                except services.WorkflowError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    self.message_user(request, spec.done(obj), messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        elif request.method == "GET":
            expected = self._expected_from_query(request, obj)
            if expected != obj.status:
                self.message_user(
                    request,
                    f"{obj.reference} was changed by someone else; it is now {obj.get_status_display().lower()}.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(change_url)
            if not obj.can_move_to(spec.to_status):
                self.message_user(
                    request,
                    f"{obj.reference} cannot go from {obj.get_status_display().lower()} "
                    f"to {status_label(spec.to_status).lower()}.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(change_url)
            if spec.name == "resolve" and obj.identity_verified_at is None:
                self.message_user(
                    request,
                    f"Record the identity check of {obj.reference} before resolving it.",
                    messages.ERROR,
                )
                return HttpResponseRedirect(change_url)
            form = spec.form_class(initial={"expected_status": expected})
        else:
            return HttpResponseNotAllowed(["GET", "POST"])
        button = _button_for(obj, spec.to_status)
        return self._page(
            request,
            obj,
            {
                "title": f"{button['label'].rstrip('…')}: {obj.reference}",
                "form": form,
                "submit_label": spec.submit,
                "submit_style": button["style"],
                "action_url": self._url(spec.name, obj),
                "move": spec.name,
            },
        )

    def assign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Assign to me. The page's status and assignee travel with the form:
        taking a request someone else took in the meantime is refused."""
        obj = self._object_for_work(request, object_id)
        change_url = self._change_url(obj)
        if request.method == "GET":
            form = admin_forms.AssignForm(initial={"expected_status": obj.status, "expected_assignee": obj.assignee_id})
            return self._page(
                request,
                obj,
                {
                    "title": f"Assign to me: {obj.reference}",
                    "form": form,
                    "submit_label": "Assign to me",
                    "submit_style": "default",
                    "action_url": self._url("assign", obj),
                    "move": "assign",
                },
            )
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        form = admin_forms.AssignForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "The form was incomplete; nothing was changed.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        try:
            services.request_assign(
                request_id=obj.pk,
                assignee=request.user,
                actor=request.user,
                expected_status=form.cleaned_data["expected_status"],
                expected_assignee_id=form.cleaned_data["expected_assignee"],
            )
        except services.ConcurrentChange:
            obj.refresh_from_db()
            holder = person_name(obj.assignee) or "nobody"
            self.message_user(
                request,
                f"{obj.reference} was changed by someone else; it is now "
                f"{obj.get_status_display().lower()} and assigned to {holder}.",
                messages.ERROR,
            )
        except services.WorkflowError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"{obj.reference} is assigned to you.", messages.SUCCESS)
        return HttpResponseRedirect(change_url)

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send the acknowledgment again (the patient lost it), after a
        confirmation: it is an email to the patient."""
        obj = self._object_for_work(request, object_id)
        if request.method == "GET":
            return self._page(
                request,
                obj,
                {
                    "title": f"Resend acknowledgment: {obj.reference}",
                    "form": admin_forms.ExpectedStatusForm(initial={"expected_status": obj.status}),
                    "submit_label": "Send the acknowledgment again",
                    "submit_style": "default",
                    "action_url": self._url("resend", obj),
                    "move": "resend",
                },
            )
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        try:
            services.request_resend_acknowledgment(request_id=obj.pk, actor=request.user)
        except services.WorkflowError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"The acknowledgment of {obj.reference} is sent again.", messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(obj))

    def identity_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Record which identifiers matched the chart (the service decides
        whether that is enough)."""
        obj = self._object_for_work(request, object_id)
        if request.method == "POST":
            form = admin_forms.IdentityCheckForm(request.POST)
            form.is_valid()  # booleans: always valid
            try:
                services.request_record_identity_check(
                    request_id=obj.pk,
                    actor=request.user,
                    dob=form.cleaned_data.get("dob", False),
                    phone=form.cleaned_data.get("phone", False),
                    email=form.cleaned_data.get("email", False),
                )
            except services.WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Identity check of {obj.reference} recorded.", messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(obj))

    def note_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._object_for_work(request, object_id)
        if not request.user.has_perm("requests_app.add_requestevent"):
            raise PermissionDenied
        if request.method == "POST":
            form = admin_forms.NoteForm(request.POST)
            if not form.is_valid():
                self.message_user(request, "; ".join(form.errors["text"]), messages.ERROR)
            else:
                try:
                    services.request_add_note(request_id=obj.pk, actor=request.user, text=form.cleaned_data["text"])
                except services.WorkflowError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    self.message_user(request, "Note added to the timeline.", messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(obj))


# --- The outbox, read-only --------------------------------------------------


@admin.register(OutboundEmail)
class OutboundEmailAdmin(admin.ModelAdmin):
    list_display = ("queued", "kind", "to", "request_reference", "state", "attempts", "last_error", "sent")
    list_filter = ("state", "kind")
    list_select_related = ("request",)
    list_per_page = 100
    # Newest first by primary key: served by the primary key's index, where
    # the model's ordering on created_at has none.
    ordering = ("-pk",)
    sortable_by = ()
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    search_fields = ("to", "request__reference")
    search_help_text = "Request reference or the exact address."
    actions = ["send_again"]
    fields = (
        "request",
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_send_again_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("requests_app.change_resetrequest")

    @admin.action(description="Send again (as a new email)", permissions=["send_again"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[OutboundEmail]) -> None:
        queued = []
        for email_id in queryset.values_list("pk", flat=True)[:200]:
            try:
                services.email_send_again(email_id=email_id, actor=request.user)
            except services.WorkflowError as exc:
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
        if obj.request is None:
            return "—"
        url = reverse("admin:requests_app_resetrequest_change", args=[obj.request_id])
        return format_html('<a href="{}">{}</a>', url, obj.request.reference)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OutboundEmail], search_term: str
    ) -> tuple[QuerySet[OutboundEmail], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        wanted = Q(to=term.lower())
        by_reference = reference_q(term)
        if by_reference is not None:
            wanted |= Q(request__in=ResetRequest.objects.filter(by_reference).values("pk"))
        return queryset.filter(wanted), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Outbound emails", **(extra_context or {})})

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().change_view(request, object_id, form_url, extra_context)
