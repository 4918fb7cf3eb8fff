"""One request's page in the admin (Django's change view, which saves
nothing): everything needed to finish the request — the patient's details
beside the identity check and the outcome, in one form — then the other
actions the workflow allows, the patient's earlier requests, the messages
sent, the timeline and the emails."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone

from .. import services
from ..exceptions import WorkflowError
from ..formatting import format_age, person_name, status_label
from ..models import Action, OutboundEmail, RequestEvent, ResetRequest, Status
from ..phones import phone_display, phone_href
from ..selectors import earlier_requests, is_overdue, next_in_queue
from ..services.workflow import NOTE_MAX_LENGTH
from . import forms as admin_forms
from .action_pages import ACTION_PAGES, ActionPagesMixin, acting_user, label_identity_fields

# The one form (verify and resolve) is offered from these statuses.
VERIFY_FROM = (Status.NEW, Status.IN_PROGRESS)

# The page shows this many of the newest timeline events, and emails.
TIMELINE_LIMIT = 300
EMAILS_LIMIT = 100


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
        pages = {action: page for action, page in ACTION_PAGES.items() if can_work and obj.allows(action)}
        # Reopen has rules beyond the table (its window, the patient's other
        # open request): the page says why instead of offering the button.
        reopen_refused = ""
        if Action.REOPEN in pages:
            try:
                services.check_move(obj, action=Action.REOPEN)
            except WorkflowError as exc:
                reopen_refused = str(exc)
                del pages[Action.REOPEN]
        # A straightforward request is finished in one form: from new, or in
        # progress before the identity check, the check and the outcome
        # together; once the check is recorded, the outcome alone.
        finish = None
        if Action.RESOLVE in pages and obj.identity_verified_at is not None:
            finish = "resolve"
        elif obj.status in VERIFY_FROM and can_work:
            finish = "verify"
        buttons = [
            {
                "move": action,
                "label": page.button,
                "direct": page.direct,
                "style": page.style,
                "shortcut": page.shortcut,
                "url": self._url(action, obj),
            }
            for action, page in pages.items()
            # Resolving is the finishing form's job on this page.
            if not (action == Action.RESOLVE and finish)
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
        verify_form = admin_forms.VerifyAndResolveForm(initial={"expected_status": obj.status})
        label_identity_fields(verify_form, obj)
        following = next_in_queue(user_id=acting_user(request).pk, after=obj) if can_work else None
        emails = list(obj.emails.order_by("created_at", "pk")[:EMAILS_LIMIT])
        return {
            "rr": obj,
            "rr_is_overdue": is_overdue(obj, now),
            "rr_overdue_by": format_age(now - obj.due_at),
            "rr_age": format_age(now - obj.submitted_at),
            "rr_phone": phone_display(obj.phone) if obj.phone else "",
            "rr_phone_href": phone_href(obj.phone) if obj.phone else "",
            "rr_sms_href": f"sms:{obj.phone}" if obj.phone else "",
            "rr_patient_age": _years_between(obj.date_of_birth, timezone.localdate(now)),
            "can_work": can_work,
            "can_note": can_work and request.user.has_perm("requests_app.add_requestevent"),
            "finish": finish,
            "reopen_refused": reopen_refused,
            "verify_url": self._url("verify", obj),
            "resolve_url": self._url(Action.RESOLVE, obj),
            "verify_form": verify_form,
            "outcomes": ResetRequest.Outcome.choices,
            "note_max_length": NOTE_MAX_LENGTH,
            "buttons": buttons,
            "next_url": self._url("change", following) if following is not None else "",
            "assign_url": self._url("assign", obj),
            "resend_url": self._url("resend", obj),
            "message_url": self._url("message", obj),
            "language_url": self._url("language", obj),
            "identity_url": self._url("identity", obj),
            "note_url": self._url("note", obj),
            # Start and the one form assign a new request already.
            "can_take": can_work and obj.is_open and obj.status != Status.NEW and obj.assignee_id != request.user.pk,
            "identity_matched": [
                label
                for label, matched in (
                    ("date of birth", obj.identity_dob_matched),
                    ("phone", obj.identity_phone_matched),
                    ("email", obj.identity_email_matched),
                )
                if matched
            ],
            "family": list(obj.family_members.all()),
            "earlier": earlier_requests(obj),
            "note_form": admin_forms.NoteForm(),
            "timeline": timeline,
            "views_count": sum(1 for event in timeline if event["kind"] == RequestEvent.Kind.VIEWED),
            "timeline_truncated": len(events) > TIMELINE_LIMIT,
            "timeline_limit": TIMELINE_LIMIT,
            "emails": emails,
            "correct_url": self._url("correct_email", obj),
            "can_correct": can_work and obj.personal_data_purged_at is None,
            "undeliverable": _undeliverable_email(obj, emails),
            "messages_sent": list(obj.patient_messages.select_related("sent_by").order_by("created_at", "pk")),
        }


def _undeliverable_email(obj: ResetRequest, emails: list[OutboundEmail]) -> OutboundEmail | None:
    """The patient's email whose report marked the request (its kind, where
    it went and the provider's reason), for the mark on the page."""
    if not obj.email_undeliverable:
        return None
    reported = (OutboundEmail.State.BOUNCED, OutboundEmail.State.COMPLAINED, OutboundEmail.State.FAILED)
    for email in reversed(emails):
        if email.is_for_patient and email.state in reported:
            return email
    return None


def _years_between(born: date | None, today: date) -> int | None:
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
