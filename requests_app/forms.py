"""Validation and normalisation of what patients type; nothing else.

The messages follow the GOV.UK Design System's error message guidance: one
per field and per rule, saying what to do ("Enter your date of birth",
"Date of birth must include a month"), never "This field is required".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any, cast

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Div, Field, Fieldset, Layout
from django import forms
from django.forms.formsets import INITIAL_FORM_COUNT, MAX_NUM_FORM_COUNT, MIN_NUM_FORM_COUNT, TOTAL_FORM_COUNT
from django.forms.utils import ErrorDict
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

from . import names
from .email_addresses import TOO_LONG as EMAIL_TOO_LONG
from .email_addresses import canonical_email
from .memorable_dates import (
    DATE_PARTS,
    DATE_TEMPLATE,
    DOB_MESSAGES,
    FAMILY_DOB_MESSAGES,
    VISIT_MESSAGES,
    DatePartsWidget,
    MemorableDateField,
    dob_field,
    no_later_than_today,
    years_ago,
)
from .models import ResetRequest
from .phones import parse_phone
from .practice_time import practice_today
from .services import Submission

# How far back a visit may be: older invitations are long gone anyway.
MAX_VISIT_AGE_YEARS = 10

# The templates each kind of field is drawn with (GOV.UK's form group: the
# label, the hint, the error message, then the input).
FIELD_TEMPLATE = "requests_app/form/field.html"
RADIOS_TEMPLATE = "requests_app/form/radios.html"

# A POST that carries none of these is the date step (docs/contract.md).
PERSONAL_FIELDS = ("first_name", "last_name", "date_of_birth", "email", "phone", "reason")


# --- Names, email, phone, free text ----------------------------------------------


class NameField(forms.CharField):
    """A person's name (requests_app/names.py): NFKC, trimmed, one space
    between words; the length is counted after that."""

    def to_python(self, value: Any) -> str:
        return names.normalize_name(super().to_python(value) or "")

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value:
            names.validate_name(value)


def name_field(label: StrOrPromise, required: StrOrPromise, autocomplete: str = "off") -> forms.CharField:
    return NameField(
        label=label,
        max_length=names.MAX_LENGTH,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": autocomplete, "spellcheck": "false"}),
        error_messages={"required": required, "max_length": names.TOO_LONG},
    )


class EmailAddressField(forms.EmailField):
    """The email input; what it accepts is canonical_email's to say (the
    form's clean_email), not Django's validator, which lets through what
    the mail layer would rewrite and says nothing specific."""

    default_validators: list[Any] = []


class TextAreaField(forms.CharField):
    """Browsers send a textarea's line breaks as CRLF but count each as one
    character against maxlength; count (and store) them the same way."""

    def to_python(self, value: Any) -> str:
        text: str = super().to_python(value) or ""
        return text.replace("\r\n", "\n")


EMAIL_FORMAT = _("Enter an email address in the correct format, like name@example.com")
PHONE_INVALID = _("Enter a phone number we can call or text, for example 555-201-3344.")
NOBODY_NAMED = _("Enter the name and date of birth of each person who uses this login, or choose “No”")


def visit_date_hint() -> str:
    """The visit date's hint, "For example, 6 8 2026": a week ago, in the
    boxes' order."""
    example = date.fromordinal(practice_today().toordinal() - 7)
    return gettext("For example, %(example)s") % {"example": f"{example.month} {example.day} {example.year}"}


def form_helper(layout: Layout) -> FormHelper:
    """crispy's helper for a form drawn inside the page's own <form>: no
    form tag and no CSRF token of its own."""
    helper = FormHelper()
    helper.form_tag = False
    helper.disable_csrf = True
    helper.layout = layout
    return helper


class Question(Field):
    """A crispy Field whose legend may be the page's heading (GOV.UK's
    question page: one question, its legend the H1)."""

    def __init__(self, *fields: str, heading: bool = False, **kwargs: Any) -> None:
        super().__init__(*fields, **kwargs)
        self.heading = heading

    def render(self, *args: Any, extra_context: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return super().render(*args, extra_context={**(extra_context or {}), "heading": self.heading}, **kwargs)


class VisitDateForm(forms.Form):
    """The first question, alone on its page: when was the visit? A patient
    inside the access window learns it before typing anything else."""

    appointment_date = MemorableDateField(
        label=_("When was your visit?"),
        messages=VISIT_MESSAGES,
        validators=[no_later_than_today(VISIT_MESSAGES)],
    )
    # A honeypot: hidden from people (and screen readers), filled in by bots
    # that complete every input they find. See views.reset._held_because; on the first
    # question's page too, and carried on to the rest of the form.
    website = forms.CharField(
        label=_("Leave this field empty"),
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )

    def __init__(self, *args: Any, heading: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["appointment_date"].help_text = visit_date_hint()
        self._heading = heading

    @functools.cached_property
    def helper(self) -> FormHelper:
        # Built when the form is drawn: a valid submission never is.
        return form_helper(self.layout())

    def rendering_key(self) -> str:
        """What this form's empty rendering depends on beyond the language."""
        return f"{self._heading}|{self.fields['appointment_date'].help_text}"

    def layout(self) -> Layout:
        return Layout(
            Question("appointment_date", template=DATE_TEMPLATE, heading=self._heading),
            Div("website", css_class="d-none", aria_hidden="true"),
        )

    def clean_appointment_date(self) -> date:
        value: date = self.cleaned_data["appointment_date"]
        if value < years_ago(practice_today(), MAX_VISIT_AGE_YEARS):
            raise forms.ValidationError(
                _("Please check the year of your visit. We can only help with visits in the last %(years)d years.")
                % {"years": MAX_VISIT_AGE_YEARS}
            )
        return value


class ResetRequestForm(VisitDateForm):
    # In the page's order (the visit date first), which is the error
    # summary's. The patient's own
    # details may be filled in by the browser (WCAG 1.3.5); family members'
    # rows are not.
    first_name = name_field(_("First name"), _("Enter your first name"), autocomplete="given-name")
    last_name = name_field(_("Last name"), _("Enter your last name"), autocomplete="family-name")
    date_of_birth = dob_field(DOB_MESSAGES, autocomplete="bday")
    email = EmailAddressField(
        label=_("Email address the portal invitation was sent to"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
        error_messages={"required": _("Enter your email address"), "max_length": EMAIL_TOO_LONG},
    )
    phone = forms.CharField(
        label=_("Phone number"),
        max_length=32,
        help_text=_("Our staff call or text this number to confirm who you are."),
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
        error_messages={"required": _("Enter your phone number"), "max_length": PHONE_INVALID},
    )
    reason = forms.ChoiceField(
        label=_("What went wrong?"),
        choices=ResetRequest.Reason.choices,
        widget=forms.RadioSelect,
        error_messages={"required": _("Choose what went wrong"), "invalid_choice": _("Choose what went wrong")},
    )
    details = TextAreaField(
        label=_("Anything else we should know? (optional)"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": 1000}),
        help_text=_("Please do not include medical information."),
        error_messages={"max_length": _("Anything else you tell us must be 1,000 characters or fewer")},
    )
    # Whether the family rows apply: left out (a one-step POST from before
    # the question) means "as the rows say".
    others_use_login = forms.ChoiceField(
        label=_("Does anyone else use this login?"),
        choices=[("yes", _("Yes")), ("no", _("No"))],
        widget=forms.RadioSelect,
        required=False,
        help_text=_("For example, your spouse or children, if they sign in with the same email address as you."),
        error_messages={"invalid_choice": _("Choose “Yes” if anyone else uses this login")},
    )

    field_order = [
        "appointment_date",
        *("first_name", "last_name", "date_of_birth", "email", "phone", "reason", "details"),
        *("others_use_login", "website"),
    ]

    def layout(self) -> Layout:
        # The page keeps this form's empty rendering per process and
        # language (templates/requests_app/reset_form.html): anything in the
        # layout that varies otherwise (today's date, the request) would
        # have to join that cache key. The visit date (its hint has today
        # in it) and the family question are drawn outside the layout.
        return Layout(
            Fieldset(
                _("About you"),
                Field("first_name", template=FIELD_TEMPLATE),
                Field("last_name", template=FIELD_TEMPLATE),
                Field("date_of_birth", template=DATE_TEMPLATE),
            ),
            Fieldset(
                _("How we reach you"),
                Field("email", template=FIELD_TEMPLATE),
                Field("phone", template=FIELD_TEMPLATE),
            ),
            Field("reason", template=RADIOS_TEMPLATE),
            Field("details", template=FIELD_TEMPLATE),
            Div("website", css_class="d-none", aria_hidden="true"),
        )

    def clean_email(self) -> str:
        # One spelling, the one the mail layer delivers to: it is what is
        # stored, what the duplicate rule compares and what the SMTP
        # envelope carries (requests_app/email_addresses.py).
        try:
            return canonical_email(self.cleaned_data["email"])
        except forms.ValidationError as exc:
            if exc.code == "invalid":
                raise forms.ValidationError(EMAIL_FORMAT, code="invalid") from None
            raise

    def clean_phone(self) -> str:
        phone = parse_phone(self.cleaned_data["phone"])
        if phone is None:
            raise forms.ValidationError(PHONE_INVALID)
        return phone

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        visit, born = cleaned.get("appointment_date"), cleaned.get("date_of_birth")
        if visit is not None and born is not None and visit < born:
            self.add_error(
                "appointment_date",
                _("The visit date cannot be before the date of birth. Please check both dates."),
            )
        return cleaned

    def family_answer(self) -> str:
        """The answer to "Does anyone else use this login?": "yes", "no", or
        "" when it was not answered."""
        value = self.data.get("others_use_login") if self.is_bound else None
        return value if value in ("yes", "no") else ""


class FamilyMemberForm(forms.Form):
    first_name = name_field(_("First name"), _("Enter their first name"))
    last_name = name_field(_("Last name"), _("Enter their last name"))
    date_of_birth = dob_field(FAMILY_DOB_MESSAGES)

    @functools.cached_property
    def helper(self) -> FormHelper:
        return form_helper(
            Layout(
                Field("first_name", template=FIELD_TEMPLATE),
                Field("last_name", template=FIELD_TEMPLATE),
                Field("date_of_birth", template=DATE_TEMPLATE),
            )
        )


class BaseFamilyFormSet(forms.BaseFormSet):
    def __init__(self, data: Any = None, *, prefix: str | None = None, **kwargs: Any) -> None:
        # The family part is optional: a POST that leaves it out entirely
        # (no management form) names nobody rather than failing.
        prefix = prefix or self.get_default_prefix()
        if data is not None and f"{prefix}-{TOTAL_FORM_COUNT}" not in data:
            data = {f"{prefix}-{TOTAL_FORM_COUNT}": "0", f"{prefix}-{INITIAL_FORM_COUNT}": "0"}
        super().__init__(data, prefix=prefix, **kwargs)

    @functools.cached_property
    def names_nobody(self) -> bool:
        """Whether this POST can be seen to name nobody, and so to be valid,
        without building its forms: the management form as the page sends
        it (at most ``max_num`` rows, none of them initial) and every
        family field left blank. Django's own validation comes to the same
        answer for such a POST at about a tenth of a one-step submission's
        instructions (bench.instructions); anything else (a row with
        something in it, a management form of another shape) takes that
        validation. tests/test_family_rows.py holds the two to one answer."""
        if not self.is_bound:
            return False
        data, key = self.data, self.add_prefix
        counts = {str(n) for n in range(self.max_num + 1)}
        if data.get(key(INITIAL_FORM_COUNT)) != "0" or data.get(key(TOTAL_FORM_COUNT)) not in counts:
            return False
        limits = [data.get(key(name)) for name in (MIN_NUM_FORM_COUNT, MAX_NUM_FORM_COUNT)]
        if any(value and not (value.isascii() and value.isdigit()) for value in limits):
            return False
        management = {
            key(name) for name in (TOTAL_FORM_COUNT, INITIAL_FORM_COUNT, MIN_NUM_FORM_COUNT, MAX_NUM_FORM_COUNT)
        }
        start = key("")
        return not any(
            name.startswith(start) and name not in management and str(value).strip() for name, value in data.items()
        )

    def is_valid(self) -> bool:
        return self.names_nobody or super().is_valid()

    def members(self) -> tuple[tuple[str, str, date], ...]:
        if self.names_nobody:
            return ()
        return tuple(
            (
                f.cleaned_data["first_name"],
                f.cleaned_data["last_name"],
                f.cleaned_data["date_of_birth"],
            )
            for f in self.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        )


FamilyFormSet = cast(
    "type[BaseFamilyFormSet]",
    forms.formset_factory(
        FamilyMemberForm,
        formset=BaseFamilyFormSet,
        extra=1,
        max_num=5,
        absolute_max=5,
        validate_max=True,
    ),
)
FAMILY_PREFIX = "family"


def is_date_step(data: Mapping[str, Any]) -> bool:
    """A POST that carries no personal field (nor the date of birth's
    boxes) only answers the first question: when was the visit?"""
    return not any(name in data for name in PERSONAL_FIELDS) and not any(
        f"date_of_birth_{part}" in data for part in DATE_PARTS
    )


def family_is_valid(form: ResetRequestForm, family: BaseFamilyFormSet) -> bool:
    """The family rows, read as the answer to "Does anyone else use this
    login?" says: ignored after "No"; after "Yes", at least one person.
    Without an answer (a one-step POST), as the rows say."""
    answer = form.family_answer()
    if answer == "no":
        return True
    if not family.is_valid():
        return False
    if answer == "yes" and not family.members():
        if "others_use_login" not in form.errors:
            form.add_error("others_use_login", NOBODY_NAMED)
        return False
    return True


def error_summary(form: forms.Form, family: BaseFamilyFormSet | None = None) -> list[tuple[str, str]]:
    """The error summary's links, in the page's order: (the id of the
    input to go to, the message). A date leads to its first box at fault,
    a group of radio buttons to its first option."""

    def target(bound: forms.BoundField) -> str:
        widget = bound.field.widget
        if isinstance(widget, DatePartsWidget):
            first = next((p for p in DATE_PARTS if widget.error_parts and p in widget.error_parts), DATE_PARTS[0])
            return f"{bound.auto_id}_{first}"
        if isinstance(widget, forms.RadioSelect):
            return f"{bound.auto_id}_0"
        return str(bound.auto_id)

    links = [("main", str(error)) for error in form.non_field_errors()]
    for bound in form:
        links += [(target(bound), str(error)) for error in bound.errors]
    if family is not None:
        links += [("family-heading", str(error)) for error in family.non_form_errors()]
        for number, member in enumerate(family, start=1):
            prefix = gettext("Family member %(n)s") % {"n": number}
            links += [("family-heading", f"{prefix}: {error}") for error in member.non_field_errors()]
            for bound in member:
                links += [(target(bound), f"{prefix}: {error}") for error in bound.errors]
    return links


def shown_as_typed(form: forms.Form | forms.BaseFormSet) -> None:
    """Keep a bound form (or formset) from validating: it shows what was
    typed, without error messages (the CSRF failure page)."""
    # Django's own caches of the errors, filled in as full_clean would.
    if isinstance(form, forms.BaseFormSet):
        form._errors = []  # type: ignore[attr-defined]
        form._non_form_errors = form.error_class()  # type: ignore[attr-defined]
        for member in form.forms:
            shown_as_typed(member)
        return
    form._errors = ErrorDict()  # type: ignore[attr-defined]
    form.cleaned_data = {}


@sensitive_variables()
def to_submission(form: ResetRequestForm, family: BaseFamilyFormSet) -> Submission:
    data = form.cleaned_data
    return Submission(
        first_name=data["first_name"],
        last_name=data["last_name"],
        date_of_birth=data["date_of_birth"],
        email=data["email"],
        phone=data["phone"],
        appointment_date=data["appointment_date"],
        reason=data["reason"],
        details=data.get("details", ""),
        family=() if form.family_answer() == "no" else family.members(),
    )
