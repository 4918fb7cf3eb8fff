"""Memorable dates as three boxes — month, day and year — that also take
the ISO value posted under the field's plain name (docs/contract.md), with
GOV.UK's messages for each way a date can be wrong."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.utils import formats
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .practice_time import practice_today

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django_stubs_ext import StrOrPromise

ISO_DATE = "%Y-%m-%d"
MAX_AGE_YEARS = 130
DATE_TEMPLATE = "requests_app/form/date_field.html"


def years_ago(today: date, years: int) -> date:
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


def no_later_than_today(messages: DateMessages) -> Any:
    def check(value: date) -> None:
        if value > practice_today():
            raise forms.ValidationError(messages.future, code="future")

    return check


def _born_at_most_130_years_ago(value: date) -> None:
    earliest = years_ago(practice_today(), MAX_AGE_YEARS)
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
        validators=[no_later_than_today(messages), _born_at_most_130_years_ago],
    )
