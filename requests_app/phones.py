"""Phone numbers in the one form requests store (E.164, ``+15552013344``)."""

from __future__ import annotations

import re
from functools import lru_cache

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


# The practice's own number is written several times in every email.
@lru_cache(maxsize=1024)
def phone_display(e164: str) -> str:
    """An E.164 number as people write it: the national format for a number
    with DEFAULT_REGION's country code (``(555) 010-0199``), the
    international one for any other (``+44 20 7946 0018``); ``e164`` as it
    is if it does not parse."""
    try:
        number = phonenumbers.parse(e164, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return e164
    # By the country code: 555-01xx numbers (reserved for examples) belong
    # to no region, but read as any other North American number.
    if number.country_code == phonenumbers.country_code_for_region(DEFAULT_REGION):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def phone_href(e164: str) -> str:
    """A tap-to-call link's target (RFC 3966): ``tel:+15550100199``."""
    return f"tel:{e164}"
