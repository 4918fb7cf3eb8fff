"""The email address in one canonical form (requests_app/email_addresses.py):
what is stored, what the duplicate rule compares and what the SMTP envelope
carries are the same address, the one Django's mail layer delivers to; what
the mail layer would rewrite is refused with a message; the per-email limit's
key folds +tag and Gmail's dotted variants into one."""

# These tests are about lookalike characters (fullwidth letters, typographic
# apostrophes): they are written as such, on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail.message import sanitize_address
from django.core.validators import validate_email
from django.utils import translation
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.provisional import domains

from requests_app import email_addresses
from requests_app.email_addresses import canonical_email, rate_limit_key
from requests_app.models import OutboundEmail, RequestEvent, ResetRequest

from .conftest import valid_form_data

NOW = datetime(2026, 6, 15, 15, 0, tzinfo=UTC)

NOT_JUST_AN_ADDRESS = (
    "Enter only the email address itself, like name@example.com: no name, quotation marks, brackets, spaces or codes."
)
LOCAL_PART_NOT_ASCII = "The part of the email address before the @ can only use the letters a to z"
DOMAIN_NOT_USABLE = "Please check the part of the email address after the @ (for example, example.com)."


@pytest.fixture(autouse=True)
def _frozen(time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)


def email_errors(response: Any) -> list[str]:
    assert response.status_code == 200
    return list(response.context["form"].errors.get("email", []))


# --- Through the form ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("maria@ｅxample.com", "maria@example.com"),  # a fullwidth letter
        ("maria@ＥＸＡＭＰＬＥ．ＣＯＭ", "maria@example.com"),  # fullwidth, and a fullwidth dot
        ("maria@example。com", "maria@example.com"),  # an ideographic full stop
        ("maria@exämple.com", "maria@xn--exmple-cua.com"),
        ("maria@EXÄMPLE.com", "maria@xn--exmple-cua.com"),
        ("maria@例え.jp", "maria@xn--r8jz45g.jp"),
    ],
)
def test_it_stores_the_address_the_mail_layer_delivers_to(submit, typed, stored):
    response = submit(valid_form_data(email=typed))

    assert response.status_code == 303
    request = ResetRequest.objects.get()
    assert request.email == stored
    assert set(OutboundEmail.objects.filter(kind="acknowledgment").values_list("to", flat=True)) == {stored}
    assert mail.outbox[0].to == [stored]
    # The SMTP backend puts sanitize_address's form on the envelope: the same.
    assert sanitize_address(mail.outbox[0].to[0], "utf-8") == stored


@pytest.mark.django_db
def test_it_takes_every_spelling_of_one_inbox_for_one_patient(submit):
    spellings = [
        "maria@example.com",
        "maria@ｅxample.com",
        "Maria@EXAMPLE.COM",
        "MARIA@ＥＸＡＭＰＬＥ．ＣＯＭ",
        "maria@example。com",
    ]
    for typed in spellings:
        assert submit(valid_form_data(email=typed)).status_code == 303

    request = ResetRequest.objects.get()
    assert request.email == "maria@example.com"
    assert request.events.filter(kind=RequestEvent.Kind.DUPLICATE).count() == len(spellings) - 1


@pytest.mark.django_db
def test_it_takes_an_international_domain_and_its_punycode_for_one_patient(submit):
    submit(valid_form_data(email="maria@exämple.com"))
    submit(valid_form_data(email="maria@xn--exmple-cua.com"))

    request = ResetRequest.objects.get()
    assert request.email == "maria@xn--exmple-cua.com"
    assert request.events.filter(kind=RequestEvent.Kind.DUPLICATE).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "message"),
    [
        pytest.param("=?utf-8?q?maria?=@example.com", NOT_JUST_AN_ADDRESS, id="encoded-word"),
        pytest.param("=?utf-8?b?bWFyaWE=?=@example.com", NOT_JUST_AN_ADDRESS, id="encoded-word-base64"),
        pytest.param("maria=?x@example.com", NOT_JUST_AN_ADDRESS, id="start-of-an-encoded-word"),
        pytest.param('"maria"@example.com', NOT_JUST_AN_ADDRESS, id="quoted-local-part"),
        pytest.param('"maria lopez"@example.com', NOT_JUST_AN_ADDRESS, id="quoted-local-part-with-space"),
        pytest.param("maria(work)@example.com", NOT_JUST_AN_ADDRESS, id="comment"),
        pytest.param("Maria <maria@example.com>", NOT_JUST_AN_ADDRESS, id="display-name"),
        pytest.param("<maria@example.com>", NOT_JUST_AN_ADDRESS, id="angle-brackets"),
        pytest.param("maria@ex\u200bample.com", NOT_JUST_AN_ADDRESS, id="zero-width-space"),
        pytest.param("maria\u202e@example.com", NOT_JUST_AN_ADDRESS, id="bidi-override"),
        pytest.param("maría@example.com", LOCAL_PART_NOT_ASCII, id="accented-local-part"),
        pytest.param("ｍaria@example.com", LOCAL_PART_NOT_ASCII, id="fullwidth-local-part"),
        pytest.param("maria@straße.de", DOMAIN_NOT_USABLE, id="idna-2003-and-2008-disagree"),
        pytest.param("maria@xn--zzzzzzzz.com", DOMAIN_NOT_USABLE, id="broken-punycode"),
        pytest.param("maria@[192.0.2.1]", DOMAIN_NOT_USABLE, id="address-literal"),
        pytest.param("maria@exa\u202emple.com", NOT_JUST_AN_ADDRESS, id="bidi-override-in-domain"),
    ],
)
def test_it_refuses_what_the_mail_layer_would_rewrite_and_says_why(submit, typed, message):
    response = submit(valid_form_data(email=typed))

    errors = email_errors(response)
    assert any(error.startswith(message) for error in errors), errors
    assert ResetRequest.objects.count() == 0
    assert mail.outbox == []


@pytest.mark.django_db
def test_it_keeps_what_was_typed_when_it_refuses_an_address(submit):
    response = submit(valid_form_data(email="maria@straße.de", first_name="Zelda"))

    html = response.content.decode()
    assert 'value="maria@straße.de"' in html
    assert 'value="Zelda"' in html


@pytest.mark.django_db
def test_it_explains_a_refused_address_in_spanish(submit):
    response = submit(valid_form_data(email="=?utf-8?q?maria?=@example.com"), HTTP_ACCEPT_LANGUAGE="es")

    assert email_errors(response) == [
        "Escriba solo la dirección de correo electrónico, como nombre@ejemplo.com: "
        "sin nombre, comillas, paréntesis, espacios ni códigos."
    ]


# --- canonical_email -------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        (" Maria.Lopez@Example.COM ", "maria.lopez@example.com"),
        ("maria+portal@example.com", "maria+portal@example.com"),
        ("o'brien@example.com", "o'brien@example.com"),
        ("maria@ｅxample.com", "maria@example.com"),
        ("maria@exämple.com", "maria@xn--exmple-cua.com"),
        ("maria@xn--exmple-cua.com", "maria@xn--exmple-cua.com"),
    ],
)
def test_canonical_email_gives_one_spelling(typed, canonical):
    assert canonical_email(typed) == canonical
    assert canonical_email(canonical) == canonical


@pytest.mark.parametrize(
    "typed",
    [
        "maria",
        "maria@",
        "@example.com",
        "maria@example",
        "maria@@example.com",
        "a..b@example.com",
        "maria@example.com.",
    ],
)
def test_canonical_email_refuses_what_is_not_an_address(typed):
    with translation.override("en"):
        with pytest.raises(ValidationError) as raised:
            canonical_email(typed)

        assert raised.value.messages == ["Enter a valid email address."]


def test_canonical_email_refuses_an_address_longer_than_254_once_in_ascii():
    # 250 characters as typed; its punycode is longer than 254.
    typed = "m@" + ".".join(["ä" * 20] * 11) + ".com"
    assert len(typed) <= 254

    with translation.override("en"):
        with pytest.raises(ValidationError) as raised:
            canonical_email(typed)

        assert raised.value.messages == ["This email address is too long for us to send email to. Please check it."]


@given(
    st.one_of(st.emails().map(str), st.text(max_size=80), st.from_regex(r"[^@\s]{1,20}@[^@\s]{1,30}", fullmatch=True))
)
def test_canonical_email_either_refuses_or_gives_what_the_mail_layer_sends_unchanged(typed):
    try:
        canonical = canonical_email(typed)
    except ValidationError:
        return
    assert canonical.isascii()
    assert canonical == canonical.lower()
    assert len(canonical) <= 254
    assert sanitize_address(canonical, "utf-8") == canonical
    assert canonical_email(canonical) == canonical


# The common spelling (letters, digits, . _ + -) skips the header parsers: for
# every address of that shape that gets as far as the check (Django's
# validate_email passed, labels of at most 63 characters), the parsers find
# nothing to change, so the shortcut gives the answer the long way would.
@given(
    st.from_regex(email_addresses._PLAIN_LOCAL, fullmatch=True),
    domains().map(str.lower) | st.from_regex(email_addresses._PLAIN_DOMAIN, fullmatch=True),
)
def test_the_shortcut_for_plain_addresses_agrees_with_the_parsers(local, domain):
    address = f"{local}@{domain}"
    assume(email_addresses.is_plain(address))
    try:
        validate_email(address)
    except ValidationError:
        assume(False)
    assert email_addresses._parsers_agree(address)
    assert getaddresses([address]) == [("", address)]
    assert sanitize_address(address, "utf-8") == address


@pytest.mark.parametrize(
    "address",
    ["maria@example.com", "m.lopez+portal@mail.example.org", "a_b-c@xn--exmple-cua.com", "1@2.co"],
)
def test_plain_addresses_take_the_shortcut(address):
    assert email_addresses.is_plain(address)
    assert canonical_email(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "Maria@example.com",  # not yet canonical
        "maria..lopez@example.com",
        ".maria@example.com",
        "maria@example",
        "maria@-",
        "o'brien@example.com",  # legal, but the parsers decide
        "maria@example.com.",
    ],
)
def test_anything_else_goes_the_long_way(address):
    assert not email_addresses.is_plain(address)


# --- rate_limit_key --------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "key"),
    [
        ("maria@example.com", "maria@example.com"),
        ("maria+portal@example.com", "maria@example.com"),
        ("maria+a+b@example.com", "maria@example.com"),
        ("m.aria@example.com", "m.aria@example.com"),  # dots matter outside Gmail
        ("Maria+X@ｅxample.com", "maria@example.com"),
        ("m.a.r.i.a@gmail.com", "maria@gmail.com"),
        ("m.a.r.i.a+portal@gmail.com", "maria@gmail.com"),
        ("Maria.Lopez@GoogleMail.com", "marialopez@gmail.com"),
        ("+portal@example.com", "+portal@example.com"),  # no mailbox before the +
    ],
)
def test_rate_limit_key_counts_the_variants_of_one_inbox_as_one(email, key):
    assert rate_limit_key(email) == key
