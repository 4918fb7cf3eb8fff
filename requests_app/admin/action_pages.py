"""The views behind a request's page: each action of the table of moves
(start, resume, wait, resolve, close, reopen), the one form that verifies and
resolves, a message to the patient, the language, assign, resend, and the
identity check and note that post from the page.

Each form posts to its own view, which calls one service with the status the
staff member saw; a GET of an action's page first asks
``services.check_move`` and sends the staff member back with its message
when the action is not possible. A finishing action posted with
``then=next`` leads on to the next request in the queue (``_after``).
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
from django.utils.formats import date_format

from .. import services
from ..exceptions import ConcurrentChange, IdentityNotVerified, TransitionNotAllowed, WorkflowError
from ..formatting import person_name
from ..models import Action, CloseReason, OutboundEmail, ResetRequest, Status
from ..phones import phone_display
from ..selectors import next_in_queue
from ..services.messages import reset_send_message
from . import forms as admin_forms
from .messages import SendMessageForm

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def acting_user(request: HttpRequest) -> User:
    """The staff member behind an admin request: every admin view runs
    behind the site's login (admin_view), so never an anonymous user."""
    if not request.user.is_authenticated:
        raise PermissionDenied
    return cast("User", request.user)


def label_identity_fields(form: forms.Form, obj: ResetRequest) -> None:
    """Each identifier's box says what the patient gave, to compare with the
    chart (the date in the one format the staff pages use)."""
    given = {
        "dob": ("Date of birth", date_format(obj.date_of_birth, "M j, Y") if obj.date_of_birth else "—"),
        "phone": ("Phone", phone_display(obj.phone)),
        "email": ("Email", obj.email),
    }
    for name, (label, value) in given.items():
        form.fields[name].label = f"{label}: {value}"


def _correct_email_form(obj: ResetRequest, **kwargs: Any) -> admin_forms.CorrectEmailForm:
    """The correction's form: with the identity check's two boxes (labelled
    with what the patient gave) unless a check is on record."""
    form = admin_forms.CorrectEmailForm(**kwargs)
    if obj.identity_verified_at is not None:
        del form.fields["dob"], form.fields["phone"]
    else:
        form.fields[
            "dob"
        ].label = (
            f"Date of birth matches the chart: {date_format(obj.date_of_birth, 'M j, Y') if obj.date_of_birth else '—'}"
        )
        form.fields["phone"].label = f"Phone matches the chart: {phone_display(obj.phone)}"
    return form


# --- The workflow's actions, as the admin presents them ---------------------


@dataclass(frozen=True)
class ActionPage:
    """How the admin presents one action of models.MOVES: its form, the
    service it calls, its button and the words it uses. Which actions are
    allowed, and why not, is the workflow's (check_move)."""

    form_class: type[forms.Form]
    perform: Callable[[ResetRequest, Any, dict[str, Any]], ResetRequest]
    done: Callable[[ResetRequest], str]
    button: str
    submit: str
    # The key that reaches the button from the request page (shortcuts.js).
    shortcut: str
    # A direct button posts at once; the others open the action's form.
    direct: bool = False
    style: str = "default"
    # Ends the staff member's work on the request: its form offers "… and
    # open the next request".
    finishing: bool = False


def _closed_message(obj: ResetRequest) -> str:
    obj.refresh_from_db(fields=["close_reason"])
    if obj.close_reason == CloseReason.SPAM:
        return f"{obj.reference} is closed as spam; no email goes to the sender."
    return f"{obj.reference} is closed; the patient is emailed."


def _reopened_message(obj: ResetRequest) -> str:
    return f"{obj.reference} is reopened and assigned to you; its due clock starts again."


# In the order of the buttons on the page.
ACTION_PAGES: dict[str, ActionPage] = {
    Action.START: ActionPage(
        form_class=admin_forms.StartForm,
        perform=lambda obj, user, data: services.reset_start(
            reset_id=obj.pk, actor=user, expected_status=data["expected_status"]
        ),
        done=lambda obj: f"{obj.reference} is in progress and assigned to you.",
        button="Start",
        submit="Start",
        shortcut="s",
        direct=True,
    ),
    Action.RESUME: ActionPage(
        form_class=admin_forms.ResumeForm,
        perform=lambda obj, user, data: services.reset_resume(
            reset_id=obj.pk, actor=user, note=data["note"], expected_status=data["expected_status"]
        ),
        done=lambda obj: f"{obj.reference} is back in progress; the due clock runs again.",
        button="Patient answered: back to in progress",
        submit="Back to in progress",
        shortcut="a",
        direct=True,
    ),
    Action.WAIT: ActionPage(
        form_class=admin_forms.WaitForm,
        perform=lambda obj, user, data: services.reset_wait(
            reset_id=obj.pk, actor=user, note=data["note"], expected_status=data["expected_status"]
        ),
        done=lambda obj: f"{obj.reference} is waiting on the patient; the due clock is paused.",
        button="Mark waiting on patient…",
        submit="Mark waiting",
        shortcut="w",
        style="",
        finishing=True,
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
        button="Resolve…",
        submit="Resolve",
        shortcut="r",
        finishing=True,
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
        button="Close…",
        submit="Close request",
        shortcut="c",
        style="danger",
        finishing=True,
    ),
    Action.REOPEN: ActionPage(
        form_class=admin_forms.ReopenForm,
        perform=lambda obj, user, data: services.reset_reopen(
            reset_id=obj.pk,
            actor=user,
            reason=data["reason"],
            note=data["note"],
            notify_patient=data["notify_patient"],
            expected_status=data["expected_status"],
        ),
        done=_reopened_message,
        button="Reopen…",
        submit="Reopen",
        shortcut="o",
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
            route("verify", self.verify_view),
            route("assign", self.assign_view),
            route("identity", self.identity_view),
            route("note", self.note_view),
            route("resend", self.resend_view),
            route("message", self.message_view),
            route("language", self.language_view),
            route("correct_email", self.correct_email_view),
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

    def _after(self, request: HttpRequest, obj: ResetRequest) -> HttpResponseRedirect:
        """Back to the request's page, or, where the staff member pressed
        "… and open the next request", on to the next one in the queue."""
        if request.POST.get("then") != "next":
            return HttpResponseRedirect(self._url("change", obj))
        following = next_in_queue(user_id=acting_user(request).pk, after=obj)
        if following is None:
            self.message_user(request, "No other request is waiting in the queue.", messages.INFO)
            return HttpResponseRedirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"))
        return HttpResponseRedirect(self._url("change", following))

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
        finishing: bool = False,
        extra: dict[str, Any] | None = None,
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
                "finishing": finishing,
                **(extra or {}),
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
                    return self._after(request, obj)
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
            title=f"{page.button.rstrip('…')}: {obj.reference}",
            form=form,
            submit=page.submit,
            move=action,
            style=page.style,
            finishing=page.finishing,
        )

    def verify_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The request page's one form: identity check and outcome, then
        started (if new), verified and resolved in one transaction. A form
        that is not complete comes back on a page of its own, as typed."""
        obj = self._object_for_work(request, object_id)
        if request.method != "POST":
            return HttpResponseRedirect(self._url("change", obj))
        form = admin_forms.VerifyAndResolveForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.reset_verify_and_resolve(
                    reset_id=obj.pk,
                    actor=acting_user(request),
                    dob=data["dob"],
                    phone=data["phone"],
                    email=data["email"],
                    outcome=data["outcome"],
                    note=data["note"],
                    expected_status=data["expected_status"],
                )
            except IdentityNotVerified as exc:
                form.add_error(None, str(exc))
            except WorkflowError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return HttpResponseRedirect(self._url("change", obj))
            else:
                self.message_user(
                    request, f"{obj.reference} is verified and resolved; the patient is emailed.", messages.SUCCESS
                )
                return self._after(request, obj)
        label_identity_fields(form, obj)
        return self._form_page(
            request,
            obj,
            title=f"Verify and resolve: {obj.reference}",
            form=form,
            submit="Verify and resolve",
            move="verify",
            style="default",
            finishing=True,
        )

    def message_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send the patient one of the practice's messages: the page shows
        each one as the patient will read it."""
        obj = self._object_for_work(request, object_id)
        if request.method == "POST":
            form = SendMessageForm(obj, data=request.POST)
            if form.is_valid():
                try:
                    reset_send_message(
                        reset_id=obj.pk,
                        actor=acting_user(request),
                        template_id=form.cleaned_data["template"].pk,
                        expected_status=form.cleaned_data["expected_status"],
                    )
                except WorkflowError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    self.message_user(
                        request, f"The message is on its way to the patient of {obj.reference}.", messages.SUCCESS
                    )
                return HttpResponseRedirect(self._url("change", obj))
        elif request.method == "GET":
            form = SendMessageForm(obj, initial={"expected_status": obj.status})
        else:
            return HttpResponseNotAllowed(["GET", "POST"])
        return self._form_page(
            request,
            obj,
            title=f"Send a message to the patient: {obj.reference}",
            form=form,
            submit="Send the message",
            move="message",
            style="default",
            extra={"previews": form.previews(), "language_name": obj.get_language_display()},
        )

    def language_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Change the language the patient's emails and status page use."""
        obj = self._object_for_work(request, object_id)
        if request.method == "POST":
            form = admin_forms.LanguageForm(request.POST)
            if form.is_valid():
                try:
                    services.reset_change_language(
                        reset_id=obj.pk, actor=acting_user(request), language=form.cleaned_data["language"]
                    )
                except WorkflowError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    obj.refresh_from_db(fields=["language"])
                    self.message_user(
                        request,
                        f"The patient of {obj.reference} now gets their emails in {obj.get_language_display()}.",
                        messages.SUCCESS,
                    )
                return HttpResponseRedirect(self._url("change", obj))
        elif request.method == "GET":
            form = admin_forms.LanguageForm(initial={"expected_status": obj.status, "language": obj.language})
        else:
            return HttpResponseNotAllowed(["GET", "POST"])
        return self._form_page(
            request,
            obj,
            title=f"Change the patient's language: {obj.reference}",
            form=form,
            submit="Change the language",
            move="language",
            style="default",
        )

    def correct_email_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Correct the email address after a call (services.reset_correct_email):
        the identity check first, unless it is on record; then the new
        address, a new status link and the acknowledgment sent to it."""
        obj = self._object_for_work(request, object_id)
        if request.method == "POST":
            form = _correct_email_form(obj, data=request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    corrected = services.reset_correct_email(
                        reset_id=obj.pk,
                        actor=acting_user(request),
                        email=data["email"],
                        dob=data.get("dob", False),
                        phone=data.get("phone", False),
                        expected_status=data["expected_status"],
                    )
                except (IdentityNotVerified, TransitionNotAllowed) as exc:
                    form.add_error(None, str(exc))
                except WorkflowError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                    return HttpResponseRedirect(self._url("change", obj))
                else:
                    kind = services.email_sent_after_correction(corrected)
                    sent = f"; the {OutboundEmail.Kind(kind).label.lower()} email goes to it" if kind else ""
                    self.message_user(
                        request,
                        f"The email address of {obj.reference} is now {corrected.email}{sent}.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(self._url("change", obj))
        elif request.method == "GET":
            if obj.personal_data_purged_at is not None:
                self.message_user(request, f"{obj.reference}'s personal data was erased.", messages.ERROR)
                return HttpResponseRedirect(self._url("change", obj))
            form = _correct_email_form(obj, initial={"expected_status": obj.status})
        else:
            return HttpResponseNotAllowed(["GET", "POST"])
        return self._form_page(
            request,
            obj,
            title=f"Correct the email address: {obj.reference}",
            form=form,
            submit="Correct the email address",
            move="correct_email",
            style="default",
            extra={"email_after": services.email_sent_after_correction(obj)},
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
