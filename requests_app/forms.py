"""Validation and normalisation of what patients type; nothing else."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, cast

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Div, Fieldset, Layout
from django import forms
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

from . import names
from .email_addresses import TOO_LONG as EMAIL_TOO_LONG
from .email_addresses import canonical_email
from .models import ResetRequest
from .phones import parse_phone
from .practice_time import practice_today
from .services import Submission

ISO_DATE = ["%Y-%m-%d"]
MAX_AGE_YEARS = 130
# How far back a visit may be: older invitations are long gone anyway.
MAX_VISIT_AGE_YEARS = 10


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%d", **kwargs)


def _years_ago(today: date, years: int) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


def validate_date_of_birth(value: date) -> None:
    today = practice_today()
    if value > today:
        raise forms.ValidationError(_("The date of birth cannot be in the future."))
    if value < _years_ago(today, MAX_AGE_YEARS):
        raise forms.ValidationError(_("Please check the year of the date of birth."))


class NameField(forms.CharField):
    """A person's name (requests_app/names.py): NFKC, trimmed, one space
    between words; the length is counted after that."""

    def to_python(self, value: Any) -> str:
        return names.normalize_name(super().to_python(value) or "")

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value:
            names.validate_name(value)


def name_field(label: StrOrPromise, autocomplete: str = "off") -> forms.CharField:
    return NameField(
        label=label,
        max_length=names.MAX_LENGTH,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": autocomplete}),
        error_messages={"max_length": names.TOO_LONG},
    )


class EmailAddressField(forms.EmailField):
    """The email input; what it accepts is canonical_email's to say (the
    form's clean_email), not Django's validator, which lets through what
    the mail layer would rewrite and says nothing specific."""

    default_validators: list[Any] = []


def dob_field(label: StrOrPromise, autocomplete: str = "off") -> forms.DateField:
    return forms.DateField(
        label=label,
        input_formats=ISO_DATE,
        validators=[validate_date_of_birth],
        widget=DateInput(attrs={"autocomplete": autocomplete}),
        error_messages={"invalid": _("Enter the date as YYYY-MM-DD, for example 1980-04-23.")},
    )


class TextAreaField(forms.CharField):
    """Browsers send a textarea's line breaks as CRLF but count each as one
    character against maxlength; count (and store) them the same way."""

    def to_python(self, value: Any) -> str:
        text: str = super().to_python(value) or ""
        return text.replace("\r\n", "\n")


class ResetRequestForm(forms.Form):
    # The patient's own details may be filled in by the browser (WCAG 1.3.5);
    # family members' rows are not.
    first_name = name_field(_("First name"), autocomplete="given-name")
    last_name = name_field(_("Last name"), autocomplete="family-name")
    date_of_birth = dob_field(_("Date of birth"), autocomplete="bday")
    email = EmailAddressField(
        label=_("Email address the portal invitation was sent to"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        error_messages={"max_length": EMAIL_TOO_LONG},
    )
    phone = forms.CharField(
        label=_("Phone number"),
        max_length=32,
        help_text=_("Our staff call or text this number to confirm who you are."),
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
    )
    appointment_date = forms.DateField(
        label=_("Date of your visit"),
        input_formats=ISO_DATE,
        widget=DateInput(),
        error_messages={"invalid": _("Enter the date as YYYY-MM-DD, for example 2026-03-14.")},
    )
    reason = forms.ChoiceField(
        label=_("What went wrong?"),
        choices=ResetRequest.Reason.choices,
        widget=forms.RadioSelect,
    )
    details = TextAreaField(
        label=_("Anything else we should know? (optional)"),
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": 1000}),
        help_text=_("Please do not include medical information."),
    )

    # A honeypot: hidden from people (and screen readers), filled in by bots
    # that complete every input they find. See views._looks_like_bot.
    website = forms.CharField(
        label=_("Leave this field empty"),
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The page keeps this form's empty rendering per process and
        # language (templates/requests_app/reset_form.html): anything here
        # that varies otherwise (today's date as a max, the request) would
        # have to join that cache key.
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.layout = Layout(
            Fieldset(_("About you"), Div("first_name", "last_name", "date_of_birth")),
            Fieldset(_("How we reach you"), "email", "phone"),
            Fieldset(_("Your visit"), "appointment_date", "reason", "details"),
            Div("website", css_class="d-none", aria_hidden="true"),
        )

    def clean_email(self) -> str:
        # One spelling, the one the mail layer delivers to: it is what is
        # stored, what the duplicate rule compares and what the SMTP
        # envelope carries (requests_app/email_addresses.py).
        return canonical_email(self.cleaned_data["email"])

    def clean_phone(self) -> str:
        phone = parse_phone(self.cleaned_data["phone"])
        if phone is None:
            raise forms.ValidationError(_("Enter a phone number we can call or text, for example 555-201-3344."))
        return phone

    def clean_appointment_date(self) -> date:
        value: date = self.cleaned_data["appointment_date"]
        today = practice_today()
        if value > today:
            raise forms.ValidationError(_("The visit date cannot be in the future."))
        if value < _years_ago(today, MAX_VISIT_AGE_YEARS):
            raise forms.ValidationError(
                _("Please check the year of your visit. We can only help with visits in the last %(years)d years.")
                % {"years": MAX_VISIT_AGE_YEARS}
            )
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        visit, born = cleaned.get("appointment_date"), cleaned.get("date_of_birth")
        if visit is not None and born is not None and visit < born:
            self.add_error(
                "appointment_date",
                _("The visit date cannot be before the date of birth. Please check both dates."),
            )
        return cleaned


class FamilyMemberForm(forms.Form):
    first_name = name_field(_("First name"))
    last_name = name_field(_("Last name"))
    date_of_birth = dob_field(_("Date of birth"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True


class BaseFamilyFormSet(forms.BaseFormSet):
    def __init__(self, data: Any = None, *, prefix: str | None = None, **kwargs: Any) -> None:
        # The family part is optional: a POST that leaves it out entirely
        # (no management form) names nobody rather than failing.
        prefix = prefix or self.get_default_prefix()
        if data is not None and f"{prefix}-TOTAL_FORMS" not in data:
            data = {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
        super().__init__(data, prefix=prefix, **kwargs)

    def members(self) -> tuple[tuple[str, str, date], ...]:
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
        family=family.members(),
    )
