"""Validation and normalisation of what patients type; nothing else.

The messages follow the GOV.UK Design System's error message guidance: one
per field and per rule, saying what to do ("Enter your date of birth",
"Date of birth must include a month"), never "This field is required".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Div, Field, Fieldset, Layout
from django import forms
from django.forms.utils import ErrorDict
from django.utils import formats
from django.utils.translation import gettext
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

ISO_DATE = "%Y-%m-%d"
MAX_AGE_YEARS = 130
# How far back a visit may be: older invitations are long gone anyway.
MAX_VISIT_AGE_YEARS = 10

# The templates each kind of field is drawn with (GOV.UK's form group: the
# label, the hint, the error message, then the input).
FIELD_TEMPLATE = "requests_app/form/field.html"
DATE_TEMPLATE = "requests_app/form/date_field.html"
RADIOS_TEMPLATE = "requests_app/form/radios.html"

# A POST that carries none of these is the date step (docs/contract.md).
PERSONAL_FIELDS = ("first_name", "last_name", "date_of_birth", "email", "phone", "reason")


def _years_ago(today: date, years: int) -> date:
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28)


# --- Memorable dates: month, day and year boxes ----------------------------------

# The boxes' order: a US practice writes month, day, year (as the US Web
# Design System's memorable date does), in both languages.
DATE_PARTS = ("month", "day", "year")
PART_LABELS = {"month": _("Month"), "day": _("Day"), "year": _("Year")}
_ISO_SHAPE = re.compile(r"\s*(\d{1,4})-(\d{1,2})-(\d{1,2})\s*")


class DatePartsWidget(forms.MultiWidget):
    """Three text boxes, ``<name>_month``, ``<name>_day`` and ``<name>_year``,
    with the numeric keypad on phones. What a date of ours posts; a client
    may post the ISO value under ``<name>`` itself instead (value_from_datadict).
    templates/requests_app/form/date_field.html draws the boxes from
    get_context, each with its label."""

    def __init__(self, autocomplete: str | None = None) -> None:
        def box(part: str, css_class: str) -> forms.TextInput:
            return forms.TextInput(
                attrs={
                    "inputmode": "numeric",
                    "spellcheck": "false",
                    "autocomplete": f"{autocomplete}-{part}" if autocomplete else "off",
                    "class": css_class,
                }
            )

        # Each class written out: the CSS build (assets/css/build.mjs) keeps
        # the rules of the classes it finds spelled in the code (css_class=…).
        widgets: dict[str, forms.Widget | type[forms.Widget]] = {
            "month": box("month", css_class="form-control date-input-month"),
            "day": box("day", css_class="form-control date-input-day"),
            "year": box("year", css_class="form-control date-input-year"),
        }
        super().__init__(widgets)
        # The boxes at fault, set by MemorableDateField when it refuses the
        # date: only they are marked (GOV.UK), or every box when None.
        self.error_parts: frozenset[str] | None = None

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        # No page of ours has both for one date; a client that posts the
        # ISO value over a page's boxes means the ISO value.
        whole = data.get(name)
        if isinstance(whole, str) and whole.strip():
            return whole
        parts = [data.get(f"{name}_{part}") for part in DATE_PARTS]
        if any(isinstance(value, str) and value.strip() for value in parts):
            return [value if isinstance(value, str) else "" for value in parts]
        return None

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return name not in data and all(f"{name}_{part}" not in data for part in DATE_PARTS)

    def decompress(self, value: Any) -> list[str | None]:
        if isinstance(value, date):
            return [str(value.month), str(value.day), str(value.year)]
        if isinstance(value, str) and (match := _ISO_SHAPE.fullmatch(value)):
            year, month, day = match.groups()
            return [month, day, year]
        return [None, None, None]

    def id_for_label(self, id_: str) -> str:
        # The first box: where the error summary's link leads.
        return f"{id_}_{DATE_PARTS[0]}" if id_ else ""

    def get_context(self, name: str, value: Any, attrs: Any) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        invalid = bool(context["widget"]["attrs"].get("aria-invalid"))
        for part, subwidget in zip(DATE_PARTS, context["widget"]["subwidgets"], strict=True):
            sub_attrs = subwidget["attrs"]
            if "id" in sub_attrs:
                sub_attrs["id"] = f"{context['widget']['attrs']['id']}_{part}"
            subwidget["label"] = PART_LABELS[part]
            subwidget["part"] = part
            at_fault = invalid and (self.error_parts is None or part in self.error_parts)
            sub_attrs.pop("aria-invalid", None)
            if at_fault:
                sub_attrs["aria-invalid"] = "true"
                sub_attrs["class"] = f"{sub_attrs.get('class', '')} is-invalid".strip()
        return context


@dataclass(frozen=True)
class DateMessages:
    """What to say about one date, by rule (GOV.UK's date input messages)."""

    required: StrOrPromise
    missing: Mapping[frozenset[str], StrOrPromise]  # by the boxes left empty
    real: StrOrPromise
    year_digits: StrOrPromise
    future: StrOrPromise


DOB_MISSING: Mapping[frozenset[str], StrOrPromise] = {
    frozenset({"month"}): _("Date of birth must include a month"),
    frozenset({"day"}): _("Date of birth must include a day"),
    frozenset({"year"}): _("Date of birth must include a year"),
    frozenset({"month", "day"}): _("Date of birth must include a month and day"),
    frozenset({"month", "year"}): _("Date of birth must include a month and year"),
    frozenset({"day", "year"}): _("Date of birth must include a day and year"),
}
DOB_MESSAGES = DateMessages(
    required=_("Enter your date of birth"),
    missing=DOB_MISSING,
    real=_("Date of birth must be a real date"),
    year_digits=_("Year of birth must include 4 numbers"),
    future=_("Date of birth must be today or in the past"),
)
FAMILY_DOB_MESSAGES = DateMessages(
    required=_("Enter their date of birth"),
    missing=DOB_MISSING,
    real=DOB_MESSAGES.real,
    year_digits=DOB_MESSAGES.year_digits,
    future=DOB_MESSAGES.future,
)
VISIT_MESSAGES = DateMessages(
    required=_("Enter the date of your visit"),
    missing={
        frozenset({"month"}): _("The date of your visit must include a month"),
        frozenset({"day"}): _("The date of your visit must include a day"),
        frozenset({"year"}): _("The date of your visit must include a year"),
        frozenset({"month", "day"}): _("The date of your visit must include a month and day"),
        frozenset({"month", "year"}): _("The date of your visit must include a month and year"),
        frozenset({"day", "year"}): _("The date of your visit must include a day and year"),
    },
    real=_("The date of your visit must be a real date"),
    year_digits=_("The year of your visit must include 4 numbers"),
    future=_("The date of your visit must be today or in the past"),
)


class MemorableDateField(forms.Field):
    """A date people know by heart, typed as month, day and year
    (DatePartsWidget); the ISO value (``1980-04-23``) posted under the
    field's own name is taken too, as the contract promises."""

    def __init__(
        self, *, messages: DateMessages, autocomplete: str | None = None, hint: StrOrPromise = "", **kwargs: Any
    ) -> None:
        super().__init__(widget=DatePartsWidget(autocomplete), help_text=hint, **kwargs)
        self.messages = messages
        self.error_messages["required"] = messages.required

    def _refuse(self, message: StrOrPromise, code: str, parts: Sequence[str] | None = None) -> forms.ValidationError:
        cast(DatePartsWidget, self.widget).error_parts = frozenset(parts) if parts else None
        return forms.ValidationError(message, code=code)

    def to_python(self, value: Any) -> date | None:
        cast(DatePartsWidget, self.widget).error_parts = None
        if value in self.empty_values:
            return None
        if isinstance(value, str):
            return self._from_iso(value)
        if isinstance(value, (list, tuple)) and len(value) == len(DATE_PARTS):
            return self._from_parts([str(v or "").strip() for v in value])
        raise self._refuse(self.messages.real, "invalid")

    def _from_iso(self, value: str) -> date:
        try:
            return datetime.strptime(value.strip(), ISO_DATE).date()
        except (ValueError, TypeError, OverflowError):
            raise self._refuse(self.messages.real, "invalid") from None

    def _from_parts(self, typed: list[str]) -> date | None:
        values = dict(zip(DATE_PARTS, typed, strict=True))
        missing = [part for part in DATE_PARTS if not values[part]]
        if len(missing) == len(DATE_PARTS):
            return None
        if missing:
            raise self._refuse(self.messages.missing[frozenset(missing)], "incomplete", missing)
        # A box is wrong on its own when it is not a number, or (month 13,
        # day 32) a number no date has; then the year must have 4 digits;
        # then the three must make a date (not 30 February).
        highest = {"month": 12, "day": 31}
        wrong = [
            part
            for part, top in highest.items()
            if not (values[part].isdecimal() and len(values[part]) <= 2 and 1 <= int(values[part]) <= top)
        ]
        if not values["year"].isdecimal():
            wrong.append("year")
        if wrong:
            raise self._refuse(self.messages.real, "invalid", [p for p in DATE_PARTS if p in wrong])
        if len(values["year"]) != 4:
            raise self._refuse(self.messages.year_digits, "year_digits", ["year"])
        try:
            return date(int(values["year"]), int(values["month"]), int(values["day"]))
        except ValueError:  # 30 February, or year 0000: no one box is wrong
            raise self._refuse(self.messages.real, "invalid") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        # Three empty boxes are an empty date: a family row left blank
        # stays blank.
        empty = data is None or data == "" or (isinstance(data, (list, tuple)) and not any(data))
        if initial in self.empty_values:
            return not empty
        return super().has_changed(initial, data)


def _no_later_than_today(messages: DateMessages) -> Any:
    def check(value: date) -> None:
        if value > practice_today():
            raise forms.ValidationError(messages.future, code="future")

    return check


def _born_at_most_130_years_ago(value: date) -> None:
    earliest = _years_ago(practice_today(), MAX_AGE_YEARS)
    if value < earliest:
        raise forms.ValidationError(
            gettext("Date of birth must be the same as or after %(date)s")
            % {"date": formats.date_format(earliest, "DATE_FORMAT")},
            code="too_old",
        )


def dob_field(messages: DateMessages, autocomplete: str | None = None) -> MemorableDateField:
    return MemorableDateField(
        label=_("Date of birth"),
        messages=messages,
        autocomplete=autocomplete,
        hint=_("For example, 4 23 1980"),
        validators=[_no_later_than_today(messages), _born_at_most_130_years_ago],
    )


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
        validators=[_no_later_than_today(VISIT_MESSAGES)],
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
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.layout = Layout(
            Question("appointment_date", template=DATE_TEMPLATE, heading=heading),
            Div("website", css_class="d-none", aria_hidden="true"),
        )

    def clean_appointment_date(self) -> date:
        value: date = self.cleaned_data["appointment_date"]
        if value < _years_ago(practice_today(), MAX_VISIT_AGE_YEARS):
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The page keeps this form's empty rendering per process and
        # language (templates/requests_app/reset_form.html): anything in the
        # layout that varies otherwise (today's date, the request) would
        # have to join that cache key. The visit date (its hint has today
        # in it) and the family question are drawn outside the layout.
        self.helper.layout = Layout(
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.layout = Layout(
            Field("first_name", template=FIELD_TEMPLATE),
            Field("last_name", template=FIELD_TEMPLATE),
            Field("date_of_birth", template=DATE_TEMPLATE),
        )


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
