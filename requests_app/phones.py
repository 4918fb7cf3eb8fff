"""Phone numbers in the one form requests store (E.164, ``+15552013344``)."""

from __future__ import annotations

import re

import phonenumbers

# Numbers without a country code are read as this country's.
DEFAULT_REGION = "US"


def parse_phone(text: str) -> str | None:
    """``text`` as an E.164 number if it is a possible phone number, else None."""
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def searched_phone(text: str) -> str | None:
    """A search term that is only a phone number (digits and the usual
    punctuation, seven digits or more), in E.164; None for anything else,
    such as a name."""
    if not re.fullmatch(r"[\d\s()+.\-]+", text) or sum(ch.isdigit() for ch in text) < 7:
        return None
    return parse_phone(text)
