"""The family formset's short way (BaseFamilyFormSet.names_nobody): a POST
whose family rows are all blank is valid and names nobody without Django's
formset validation, and must come to exactly the answer that validation
gives, for the page's own POST and for every odd shape a client may send."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.http import QueryDict

from requests_app.forms import FAMILY_PREFIX, FamilyFormSet

from .conftest import family_data


def django_s_answer(data: Any) -> tuple[bool, tuple[Any, ...]]:
    """Django's own validation of the same data, the short way bypassed."""
    formset = FamilyFormSet(data, prefix=FAMILY_PREFIX)
    valid = forms.BaseFormSet.is_valid(formset)
    members = tuple(
        (f.cleaned_data["first_name"], f.cleaned_data["last_name"], f.cleaned_data["date_of_birth"])
        for f in formset.forms
        if valid and f.cleaned_data
    )
    return valid, members


def as_posted(data: dict[str, Any]) -> QueryDict:
    posted = QueryDict(mutable=True)
    for key, value in data.items():
        posted.setlist(key, value if isinstance(value, list) else [value])
    return posted


BLANK_ROW = {"family-0-first_name": "", "family-0-last_name": "", "family-0-date_of_birth": ""}

SHAPES = {
    # What the page sends when nobody is named: one empty row.
    "the page's one empty row": {**family_data(total=1), **BLANK_ROW},
    "no rows": family_data(),
    "five empty rows": family_data(total=5),
    "spaces only": {**family_data(total=1), "family-0-first_name": "  ", "family-0-last_name": "\u3000"},
    "empty date boxes": {
        **family_data(total=1),
        **{f"family-0-date_of_birth_{part}": "" for part in ("day", "month", "year")},
    },
    "without MIN and MAX": {"family-TOTAL_FORMS": "1", "family-INITIAL_FORMS": "0"},
    "empty MIN and MAX": {**family_data(total=1), "family-MIN_NUM_FORMS": "", "family-MAX_NUM_FORMS": ""},
    "a member named": family_data(("Ana", "Lopez", "2012-09-01")),
    "a name only": {**family_data(total=1), "family-0-first_name": "Ana"},
    "a date box only": {**family_data(total=1), "family-0-date_of_birth_year": "2012"},
    "a zero-width space": {**family_data(total=1), "family-0-first_name": "\u200b"},
    "a name in a row past the count": {**family_data(total=1), "family-3-first_name": "Ana"},
    "six rows": family_data(total=6),
    "a count of 01": {**family_data(), "family-TOTAL_FORMS": "01"},
    "a non-numeric count": {**family_data(), "family-TOTAL_FORMS": "abc"},
    "a negative count": {**family_data(), "family-TOTAL_FORMS": "-1"},
    "no INITIAL_FORMS": {"family-TOTAL_FORMS": "1"},
    "an initial row": {**family_data(total=1), "family-INITIAL_FORMS": "1"},
    "a non-numeric MAX": {**family_data(total=1), "family-MAX_NUM_FORMS": "abc"},
    "an Arabic-Indic MIN": {**family_data(total=1), "family-MIN_NUM_FORMS": "\u0663"},
    "the count twice": {**family_data(total=1), "family-TOTAL_FORMS": ["9", "1"]},
}


@pytest.mark.parametrize("data", SHAPES.values(), ids=SHAPES.keys())
def test_the_short_way_answers_as_django_s_validation_does(data):
    posted = as_posted(data)
    formset = FamilyFormSet(posted, prefix=FAMILY_PREFIX)

    valid = formset.is_valid()

    assert (valid, formset.members() if valid else ()) == django_s_answer(posted)


@pytest.mark.parametrize(
    "name", ["the page's one empty row", "no rows", "five empty rows", "spaces only", "without MIN and MAX"]
)
def test_blank_rows_take_the_short_way(name):
    assert FamilyFormSet(as_posted(SHAPES[name]), prefix=FAMILY_PREFIX).names_nobody


@pytest.mark.parametrize(
    "name", ["a member named", "a zero-width space", "a non-numeric count", "an initial row", "a non-numeric MAX"]
)
def test_anything_else_takes_django_s_validation(name):
    assert not FamilyFormSet(as_posted(SHAPES[name]), prefix=FAMILY_PREFIX).names_nobody


def test_an_unbound_formset_does_not_take_the_short_way():
    assert not FamilyFormSet(prefix=FAMILY_PREFIX).names_nobody
