"""The small pages of a request's workflow forms: start, wait, resolve,
close, assign, resend and the identity check and note that post from the
request's page.

Each form posts to its own view, which calls one service with the status the
staff member saw; a GET of an action's page first asks
``services.check_move`` and sends the staff member back with its message
when the action is not possible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from .. import services
from ..exceptions import ConcurrentChange, WorkflowError
from ..formatting import person_name
from ..models import Action, CloseReason, ResetRequest, Status
from . import forms as admin_forms

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def acting_user(request: HttpRequest) -> User:
    """The staff member behind an admin request: every admin view runs
    behind the site's login (admin_view), so never an anonymous user."""
    if not request.user.is_authenticated:
        raise PermissionDenied
    return cast("User", request.user)


# --- The workflow's actions, as the admin presents them ---------------------


@dataclass(frozen=True)
class ActionPage:
    """How the admin presents one action of models.MOVES: its form, the
    service it calls, its button and the words it uses. Which actions are
    allowed, and why not, is the workflow's (check_move)."""

    form_class: type[forms.Form]
    perform: Callable[[ResetRequest, Any, dict[str, Any]], ResetRequest]
    done: Callable[[ResetRequest], str]
    button: Callable[[ResetRequest], str]
    submit: str
    # A direct button posts at once; the others open the action's form.
    direct: bool = False
    style: str = "default"


def _closed_message(obj: ResetRequest) -> str:
    obj.refresh_from_db(fields=["close_reason"])
    if obj.close_reason == CloseReason.SPAM:
        return f"{obj.reference} is closed as spam; no email goes to the sender."
    return f"{obj.reference} is closed; the patient is emailed."


# In the order of the buttons on the page.
ACTION_PAGES: dict[str, ActionPage] = {
    Action.START: ActionPage(
        form_class=admin_forms.StartForm,
        perform=lambda obj, user, data: services.reset_start(
            reset_id=obj.pk, actor=user, expected_status=data["expected_status"]
        ),
        done=lambda obj: f"{obj.reference} is in progress.",
        button=lambda obj: "Start" if obj.status == Status.NEW else "Patient answered: back to in progress",
        submit="Start",
        direct=True,
    ),
    Action.WAIT: ActionPage(
        form_class=admin_forms.WaitForm,
        perform=lambda obj, user, data: services.reset_wait(
            reset_id=obj.pk, actor=user, note=data["note"], expected_status=data["expected_status"]
        ),
        done=lambda obj: f"{obj.reference} is waiting on the patient; the due clock is paused.",
        button=lambda obj: "Mark waiting on patient…",
        submit="Mark waiting",
        style="",
    ),
    Action.RESOLVE: ActionPage(
        form_class=admin_forms.ResolveForm,
        perform=lambda obj, user, data: services.reset_resolve(
            reset_id=obj.pk,
            actor=user,
            outcome=data["outcome"],
            note=data["note"],
            expected_status=data["expected_status"],
        ),
        done=lambda obj: f"{obj.reference} is resolved; the patient is emailed.",
        button=lambda obj: "Resolve…",
        submit="Resolve",
    ),
    Action.CLOSE: ActionPage(
        form_class=admin_forms.CloseForm,
        perform=lambda obj, user, data: services.reset_close(
            reset_id=obj.pk,
            actor=user,
            reason=data["reason"],
            note=data["note"],
            expected_status=data["expected_status"],
        ),
        done=_closed_message,
        button=lambda obj: "Close…",
        submit="Close request",
        style="danger",
    ),
}


class ActionPagesMixin(admin.ModelAdmin):
    """The views the request page's forms post to, and their URLs."""

    def action_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name

        def route(name: str, view: Callable[..., HttpResponse]) -> URLPattern:
            return path(
                f"<path:object_id>/{name}/", self.admin_site.admin_view(view), name="{}_{}_{}".format(*info, name)
            )

        def move_view_of(action: str) -> Callable[..., HttpResponse]:
            def view(request: HttpRequest, object_id: str) -> HttpResponse:
                return self.move_view(request, object_id, action)

            return view

        return [
            *(route(action, move_view_of(action)) for action in ACTION_PAGES),
            route("assign", self.assign_view),
            route("identity", self.identity_view),
            route("note", self.note_view),
            route("resend", self.resend_view),
        ]

    def _url(self, name: str, obj: ResetRequest) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=[obj.pk])

    def _object_for_work(self, request: HttpRequest, object_id: str) -> ResetRequest:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such reset request.")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def _form_page(
        self,
        request: HttpRequest,
        obj: ResetRequest,
        *,
        title: str,
        form: forms.Form,
        submit: str,
        move: str,
        style: str,
    ) -> TemplateResponse:
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
                "change_url": self._url("change", obj),
                "waiting_auto_close_days": settings.WAITING_AUTO_CLOSE_DAYS,
                "title": title,
                "form": form,
                "submit_label": submit,
                "submit_style": style,
                "action_url": self._url(move, obj),
                "move": move,
            },
        )

    def move_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """A small page with the form of one action. GET shows it, or sends
        the staff member back with the workflow's reason if the action is
        not possible; POST calls the service with the status the staff
        member saw, and reports the outcome on the request's page."""
        page = ACTION_PAGES[action]
        obj = self._object_for_work(request, object_id)
        change_url = self._url("change", obj)
        if request.method == "POST":
            form = page.form_class(request.POST)
            if form.is_valid():
                try:
                    page.perform(obj, acting_user(request), form.cleaned_data)
                except WorkflowError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    self.message_user(request, page.done(obj), messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        elif request.method == "GET":
            expected = request.GET.get("expected_status", "")
            expected = expected if expected in Status.values else obj.status
            try:
                services.check_move(obj, action=action, expected_status=expected)
            except WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return HttpResponseRedirect(change_url)
            form = page.form_class(initial={"expected_status": expected})
        else:
            return HttpResponseNotAllowed(["GET", "POST"])
        return self._form_page(
            request,
            obj,
            title=f"{page.button(obj).rstrip('…')}: {obj.reference}",
            form=form,
            submit=page.submit,
            move=action,
            style=page.style,
        )

    def assign_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Assign to me. The page's status and assignee travel with the form:
        taking a request someone else took in the meantime is refused."""
        obj = self._object_for_work(request, object_id)
        change_url = self._url("change", obj)
        if request.method == "GET":
            form = admin_forms.AssignForm(initial={"expected_status": obj.status, "expected_assignee": obj.assignee_id})
            return self._form_page(
                request,
                obj,
                title=f"Assign to me: {obj.reference}",
                form=form,
                submit="Assign to me",
                move="assign",
                style="default",
            )
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        form = admin_forms.AssignForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "The form was incomplete; nothing was changed.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        try:
            services.reset_assign(
                reset_id=obj.pk,
                assignee=acting_user(request),
                actor=acting_user(request),
                expected_status=form.cleaned_data["expected_status"],
                expected_assignee_id=form.cleaned_data["expected_assignee"],
            )
        except ConcurrentChange:
            obj.refresh_from_db()
            holder = person_name(obj.assignee) or "nobody"
            self.message_user(
                request,
                f"{obj.reference} was changed by someone else; it is now "
                f"{obj.get_status_display().lower()} and assigned to {holder}.",
                messages.ERROR,
            )
        except WorkflowError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"{obj.reference} is assigned to you.", messages.SUCCESS)
        return HttpResponseRedirect(change_url)

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send the acknowledgment again (the patient lost it), after a
        confirmation: it is an email to the patient."""
        obj = self._object_for_work(request, object_id)
        if request.method == "GET":
            return self._form_page(
                request,
                obj,
                title=f"Resend acknowledgment: {obj.reference}",
                form=admin_forms.ExpectedStatusForm(initial={"expected_status": obj.status}),
                submit="Send the acknowledgment again",
                move="resend",
                style="default",
            )
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        try:
            services.reset_resend_acknowledgment(reset_id=obj.pk, actor=acting_user(request))
        except WorkflowError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"The acknowledgment of {obj.reference} is sent again.", messages.SUCCESS)
        return HttpResponseRedirect(self._url("change", obj))

    def identity_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Record which identifiers matched the chart (the service decides
        whether that is enough)."""
        obj = self._object_for_work(request, object_id)
        if request.method == "POST":
            form = admin_forms.IdentityCheckForm(request.POST)
            form.is_valid()  # booleans: always valid
            try:
                services.reset_record_identity_check(
                    reset_id=obj.pk,
                    actor=acting_user(request),
                    dob=form.cleaned_data.get("dob", False),
                    phone=form.cleaned_data.get("phone", False),
                    email=form.cleaned_data.get("email", False),
                )
            except WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Identity check of {obj.reference} recorded.", messages.SUCCESS)
        return HttpResponseRedirect(self._url("change", obj))

    def note_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        obj = self._object_for_work(request, object_id)
        if not request.user.has_perm("requests_app.add_requestevent"):
            raise PermissionDenied
        if request.method == "POST":
            form = admin_forms.NoteForm(request.POST)
            if not form.is_valid():
                self.message_user(request, "; ".join(str(error) for error in form.errors["text"]), messages.ERROR)
            else:
                try:
                    services.reset_add_note(
                        reset_id=obj.pk,
                        actor=acting_user(request),
                        text=form.cleaned_data["text"],
                    )
                except WorkflowError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    self.message_user(request, "Note added to the timeline.", messages.SUCCESS)
        return HttpResponseRedirect(self._url("change", obj))
