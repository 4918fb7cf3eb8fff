"""The small forms of the staff workflow in the admin.

They collect and validate input only; the rules (which move is allowed, what
resolving needs) live in services/workflow.py, which the admin views call. Every form
that moves a request carries ``expected_status``: the status the staff member
saw when they chose the move, so that of two people acting at once the second
is told the request changed instead of silently overwriting the first.
"""

from __future__ import annotations

from django import forms
from django.conf import settings

from ..email_addresses import MAX_LENGTH as EMAIL_MAX_LENGTH
from ..email_addresses import canonical_email
from ..models import ResetRequest
from ..services.workflow import NOTE_MAX_LENGTH


def note_field(label: str = "Note (optional)", *, required: bool = False) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        max_length=NOTE_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "maxlength": NOTE_MAX_LENGTH}),
        help_text="Internal: the patient never sees it.",
    )


class ExpectedStatusForm(forms.Form):
    """The status the page showed when the staff member chose the move."""

    expected_status = forms.ChoiceField(choices=ResetRequest.Status.choices, widget=forms.HiddenInput)


class StartForm(ExpectedStatusForm):
    """new → in progress."""


class ResumeForm(ExpectedStatusForm):
    """waiting → in progress: the patient answered."""

    note = note_field("What did the patient say? (optional)")


class WaitForm(ExpectedStatusForm):
    note = note_field("What are you waiting for? (optional)")


def outcome_field() -> forms.ChoiceField:
    return forms.ChoiceField(
        label="Outcome",
        choices=ResetRequest.Outcome.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the outcome of the reset."},
    )


class ResolveForm(ExpectedStatusForm):
    outcome = outcome_field()
    note = note_field()


class IdentityCheckForm(forms.Form):
    """Which identifiers the patient gave that match the chart. The rule for
    "verified" (date of birth and one more) is the service's. Nothing is
    ticked for the staff member: the check is a deliberate act."""

    dob = forms.BooleanField(label="Date of birth matches the chart", required=False)
    phone = forms.BooleanField(label="Phone matches the chart", required=False)
    email = forms.BooleanField(label="Email matches the chart", required=False)


class VerifyAndResolveForm(ExpectedStatusForm, IdentityCheckForm):
    """The front desk's one form: identity check and outcome in one submit."""

    outcome = outcome_field()
    note = note_field()


class ReopenForm(ExpectedStatusForm):
    reason = forms.ChoiceField(
        label="Why reopen it?",
        choices=ResetRequest.ReopenReason.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose why the request is reopened."},
    )
    note = note_field()
    notify_patient = forms.BooleanField(
        label="Email the patient that we are working on it again", required=False, initial=True
    )


class LanguageForm(ExpectedStatusForm):
    language = forms.ChoiceField(
        label="The patient's language",
        choices=settings.LANGUAGES,
        widget=forms.RadioSelect,
        help_text="Their emails and status page are written in it from now on.",
        error_messages={"required": "Choose the patient's language."},
    )


class CloseForm(ExpectedStatusForm):
    reason = forms.ChoiceField(
        label="Reason",
        choices=ResetRequest.CloseReason.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose why the request is closed."},
    )
    note = note_field()


class AssignForm(ExpectedStatusForm):
    # The assignee the page showed (empty: nobody), so that taking a request
    # someone else just took is refused rather than done silently.
    expected_assignee = forms.IntegerField(required=False, widget=forms.HiddenInput)


class NoteForm(forms.Form):
    text = note_field("Internal note", required=True)


class CorrectEmailForm(ExpectedStatusForm):
    """The address the patient gives on the phone, and — unless the
    identity check is on record already (the view then removes them) —
    the two identifiers that must match the chart first. The email cannot
    count: it is what is wrong."""

    email = forms.CharField(
        label="The patient's email address, as they spell it now",
        max_length=EMAIL_MAX_LENGTH,
        strip=True,
        widget=forms.EmailInput(attrs={"autocomplete": "off", "spellcheck": "false", "size": 40}),
        help_text="It replaces the one on file; the acknowledgment goes to it with a new status link.",
        error_messages={"required": "Enter the patient's email address."},
    )
    dob = forms.BooleanField(label="Date of birth matches the chart", required=False)
    phone = forms.BooleanField(label="Phone matches the chart", required=False)

    def clean_email(self) -> str:
        # The same canonical form as the patient's form keeps.
        return canonical_email(self.cleaned_data["email"])
