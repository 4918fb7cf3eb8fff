"""One request's page in the admin (Django's change view, which saves
nothing): the patient, the identity check, the buttons of the actions the
workflow allows, the timeline and the emails."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone

from .. import services
from ..formatting import format_age, person_name, status_label
from ..models import FamilyMember, RequestEvent, ResetRequest
from ..selectors import is_overdue
from . import forms as admin_forms
from .action_pages import ACTION_PAGES, ActionPagesMixin, acting_user

# The page shows this many of the newest timeline events, and emails.
TIMELINE_LIMIT = 300
EMAILS_LIMIT = 100


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


def _unattended_actor(event: RequestEvent) -> str:
    if event.kind in (RequestEvent.Kind.SUBMITTED, RequestEvent.Kind.DUPLICATE):
        return "patient"
    return "system"


class RequestPageMixin(ActionPagesMixin):
    """The request's page; its forms post to ActionPagesMixin's views."""

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
                services.reset_record_view(reset_id=obj.pk, actor=acting_user(request))
            extra_context = {
                **(extra_context or {}),
                "title": "Reset request",
                "subtitle": None,
                **self._page_context(request, obj),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, *args, **kwargs)

    def _page_context(self, request: HttpRequest, obj: ResetRequest) -> dict[str, Any]:
        now = timezone.now()
        can_work = self.has_change_permission(request, obj)
        buttons = []
        if can_work:
            buttons = [
                {
                    "move": action,
                    "label": page.button(obj),
                    "direct": page.direct,
                    "style": page.style,
                    "url": self._url(action, obj),
                }
                for action, page in ACTION_PAGES.items()
                if obj.allows(action)
            ]
        events = list(obj.events.select_related("actor").order_by("-created_at", "-pk")[: TIMELINE_LIMIT + 1])
        timeline = [
            {
                "kind": event.kind,
                "kind_label": event.get_kind_display(),
                "at": event.created_at,
                "who": person_name(event.actor) or _unattended_actor(event),
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
            "timeline_truncated": len(events) > TIMELINE_LIMIT,
            "timeline_limit": TIMELINE_LIMIT,
            "emails": list(obj.emails.order_by("created_at", "pk")[:EMAILS_LIMIT]),
        }
