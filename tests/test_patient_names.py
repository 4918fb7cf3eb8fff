"""Names (requests_app/names.py): the patient's and each family member's.

A first name goes verbatim into "Dear …," of an email sent from the
practice's own address to whatever address was typed, and every name into
the staff list and the CSV export: letters, marks, spaces, hyphens,
apostrophes and periods in NFKC, and nothing that carries a line, a link or
reorders text."""

# These tests are about lookalike characters (fullwidth letters, typographic
# apostrophes): they are written as such, on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core import mail

from requests_app.models import FamilyMember, OutboundEmail, ResetRequest

from .conftest import family_data, valid_form_data

NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)

HIDDEN = "Please type the name on one line, with no hidden or special characters."
LINK = (
    "A name cannot contain a web address. If the name has a period in it, put a space after the period, "
    "as in “St. John”."
)
DIGITS = "A name cannot contain numbers."
CHARACTERS = "A name can only have letters, spaces, hyphens (-), apostrophes (') and periods (.)."
NO_LETTERS = "Please type the name in letters."
TOO_LONG = "Please shorten the name to 100 characters or fewer."

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def assert_nothing_stored() -> None:
    assert ResetRequest.objects.count() == 0
    assert FamilyMember.objects.count() == 0
    assert OutboundEmail.objects.count() == 0
    assert mail.outbox == []


REFUSED = [
    pytest.param("Maria\nClick http://evil.example", HIDDEN, id="line-break-and-link"),
    pytest.param("Maria\r\nClick here", HIDDEN, id="crlf"),
    pytest.param("Maria\tLopez", HIDDEN, id="tab"),
    pytest.param("A\u202eB", HIDDEN, id="right-to-left-override"),
    pytest.param("A\u2066B", HIDDEN, id="bidi-isolate"),
    pytest.param("A\u200bB", HIDDEN, id="zero-width-space"),
    pytest.param("A\u200dB", HIDDEN, id="zero-width-joiner"),
    pytest.param("A\ufeffB", HIDDEN, id="byte-order-mark"),
    pytest.param("A\u2028B", HIDDEN, id="line-separator"),
    pytest.param("Ann.evil", LINK, id="period-then-letters"),
    pytest.param("www.evil.com", LINK, id="domain"),
    pytest.param("evil.example", LINK, id="bare-domain"),
    pytest.param("http://evil", LINK, id="scheme"),
    pytest.param("ｅｖｉｌ．ｃｏｍ", LINK, id="fullwidth-domain"),
    pytest.param("R2D2", DIGITS, id="digits"),
    pytest.param("Maria²", DIGITS, id="superscript-digit"),
    pytest.param("Maria <b>", CHARACTERS, id="angle-brackets"),
    pytest.param("maria@example", CHARACTERS, id="at-sign"),
    pytest.param("Maria!", CHARACTERS, id="exclamation-mark"),
    pytest.param("Maria 😀", CHARACTERS, id="emoji"),
    pytest.param("- '", NO_LETTERS, id="no-letters"),
    # 10 characters as typed; NFKC writes each as 18.
    pytest.param("\ufdfa" * 10, TOO_LONG, id="longer-than-100-once-normalised"),
]


@pytest.mark.parametrize("field", ["first_name", "last_name"])
@pytest.mark.parametrize(("name", "message"), REFUSED)
def test_it_refuses_a_name_that_is_not_one_and_says_why(submit, field, name, message):
    response = submit(valid_form_data(**{field: name}))

    assert response.status_code == 200
    assert response.context["form"].errors[field] == [message]
    assert_nothing_stored()


@pytest.mark.parametrize(("name", "message"), REFUSED)
def test_it_refuses_the_same_in_a_family_members_name(submit, name, message):
    response = submit({**valid_form_data(), **family_data((name, "Lopez", "2012-09-01"))})

    assert response.status_code == 200
    assert response.context["family"].errors[0]["first_name"] == [message]
    assert_nothing_stored()


def test_it_keeps_what_was_typed_when_it_refuses_a_name(submit):
    response = submit(valid_form_data(first_name="Ann.evil", last_name="Lopez"))

    html = response.content.decode()
    assert 'value="Ann.evil"' in html
    assert 'value="Lopez"' in html


def test_it_explains_a_refused_name_in_spanish(submit):
    response = submit(valid_form_data(first_name="R2D2"), HTTP_ACCEPT_LANGUAGE="es")

    assert response.context["form"].errors["first_name"] == ["Un nombre no puede contener números."]


# Each typed as a patient might (a decomposed accent, a fullwidth keyboard, a
# non-breaking space or hyphen); stored as one spelling, NFKC.
NORMALISED = [
    pytest.param("Jose\u0301", "José", id="decomposed-accent"),
    pytest.param("Zoe\u0308", "Zoë", id="decomposed-diaeresis"),
    pytest.param("ｍａｒｉａ", "maria", id="fullwidth"),
    pytest.param("Oʼ\u00a0Neill", "Oʼ Neill", id="modifier-apostrophe-and-no-break-space"),
    pytest.param("Mary\u2011Jane", "Mary-Jane", id="non-breaking-hyphen"),
    pytest.param("D＇Arcy", "D'Arcy", id="fullwidth-apostrophe"),
    pytest.param("St.  John", "St. John", id="period-and-two-spaces"),
    pytest.param("Maria\u3000José", "Maria José", id="ideographic-space"),
    pytest.param("ﬁona", "fiona", id="ligature"),
]


@pytest.mark.parametrize(("typed", "stored"), NORMALISED)
def test_it_stores_a_name_in_one_spelling(submit, typed, stored):
    response = submit(valid_form_data(first_name=typed, last_name=typed))

    assert response.status_code == 303
    request = ResetRequest.objects.get()
    assert (request.first_name, request.last_name) == (stored, stored)
    assert f"Dear {stored}," in mail.outbox[0].body


@pytest.mark.parametrize(("typed", "stored"), NORMALISED)
def test_it_stores_a_family_members_name_in_one_spelling(submit, typed, stored):
    response = submit({**valid_form_data(), **family_data((typed, typed, "2012-09-01"))})

    assert response.status_code == 303
    member = FamilyMember.objects.get()
    assert (member.first_name, member.last_name) == (stored, stored)


# A real name, kept as typed, and a lookalike of it that is refused: the
# rules tell the two apart.
REAL_AND_LOOKALIKE = [
    pytest.param("O’Brien", "O’Brien\u200b", HIDDEN, id="typographic-apostrophe"),
    pytest.param("D'Arcy", "D'Arcy\nhttp://evil.example", HIDDEN, id="apostrophe"),
    pytest.param("Mary-Jane", "Mary-Jane\u202e", HIDDEN, id="hyphen"),
    pytest.param("St. John", "St.John", LINK, id="period-and-space"),
    pytest.param("J.R.R.", "J.R.R.Tolkien", LINK, id="initials"),
    pytest.param("Zoë", "Zoë0", DIGITS, id="diaeresis"),
    pytest.param("Nguyễn", "Nguyễn\u2066", HIDDEN, id="vietnamese"),
    pytest.param("مُحَمَّد", "مُحَمَّد\u200f", HIDDEN, id="arabic-with-harakat"),
    pytest.param("张伟", "张伟.com", LINK, id="chinese"),
    pytest.param("देवनागरी", "देवनागरी\u0967", DIGITS, id="devanagari-with-vowel-signs"),
    pytest.param("A" * 100, "A" * 99 + "\ufb01", TOO_LONG, id="100-characters"),
]


@pytest.mark.parametrize(("real", "lookalike", "message"), REAL_AND_LOOKALIKE)
def test_it_tells_a_real_name_from_a_lookalike(submit, real, lookalike, message):
    refused = submit(valid_form_data(first_name=lookalike))

    assert refused.status_code == 200
    assert refused.context["form"].errors["first_name"] == [message]
    assert_nothing_stored()

    accepted = submit(valid_form_data(first_name=real, last_name=real))

    assert accepted.status_code == 303
    request = ResetRequest.objects.get()
    assert (request.first_name, request.last_name) == (real, real)
    assert f"Dear {real}," in mail.outbox[0].body
