"""What a person's name may be: the patient's and each family member's.

A name goes into the staff list, the CSV export and, as "Dear …,", into
emails sent from the practice's own address to whatever address was typed.
So it is letters (with their marks), spaces, hyphens, apostrophes and
periods, in Unicode NFKC, and nothing that could carry a message or a link
or reorder the text around it: no line breaks or other control characters,
no format characters (bidi overrides, zero-width spaces and joiners), no
digits, and no period followed directly by two or more letters (a domain:
``www.evil.com``, ``Ann.evil``), while ``St. John`` and ``J.R.`` stay.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

MAX_LENGTH = 100

HIDDEN_CHARACTERS = _("Please type the name on one line, with no hidden or special characters.")
LOOKS_LIKE_A_LINK = _(
    "A name cannot contain a web address. If the name has a period in it, put a space after the "
    "period, as in “St. John”."
)
HAS_DIGITS = _("A name cannot contain numbers.")
OTHER_CHARACTERS = _("A name can only have letters, spaces, hyphens (-), apostrophes (') and periods (.).")
NO_LETTERS = _("Please type the name in letters.")
TOO_LONG = _("Please shorten the name to 100 characters or fewer.")

# Besides letters and marks, after NFKC (a non-breaking or ideographic space
# is a plain space by then).
# The apostrophe, the right single quotation mark, the modifier letter apostrophe.
APOSTROPHES = frozenset("'\u2019\u02bc")
PUNCTUATION = APOSTROPHES | frozenset(" -.")


def normalize_name(text: str) -> str:
    """``text`` in NFKC, trimmed, each run of spaces made one space, and the
    typographic hyphen (which a non-breaking hyphen becomes) the plain one:
    staff search a name by one spelling."""
    nfkc = unicodedata.normalize("NFKC", text).replace("\u2010", "-")
    return " ".join(part for part in nfkc.split(" ") if part)


def validate_name(name: str) -> None:
    """ValidationError, in the patient's words, unless ``name`` (already
    normalised) is a name by the rules above."""
    categories = [unicodedata.category(char) for char in name]
    # Cc (line breaks, tabs, NUL), Cf (bidi overrides, zero-width), Cs, Co,
    # Cn; the line and paragraph separators; spaces other than U+0020.
    if any(cat[0] == "C" or (cat[0] == "Z" and char != " ") for char, cat in zip(name, categories, strict=True)):
        raise ValidationError(HIDDEN_CHARACTERS, code="hidden")
    if "://" in name or _period_before_letters(name, categories):
        raise ValidationError(LOOKS_LIKE_A_LINK, code="link")
    if any(cat[0] == "N" for cat in categories):
        raise ValidationError(HAS_DIGITS, code="digits")
    if any(cat[0] not in "LM" and char not in PUNCTUATION for char, cat in zip(name, categories, strict=True)):
        raise ValidationError(OTHER_CHARACTERS, code="characters")
    if not any(cat[0] == "L" for cat in categories):
        raise ValidationError(NO_LETTERS, code="no_letters")


def _period_before_letters(name: str, categories: list[str]) -> bool:
    """A period followed directly by two or more letters (their marks
    riding along), as in a domain name."""
    for i, char in enumerate(name):
        if char != ".":
            continue
        letters = 0
        for cat in categories[i + 1 :]:
            if cat[0] == "L":
                letters += 1
            elif cat[0] != "M":
                break
            if letters >= 2:
                return True
    return False
