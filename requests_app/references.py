"""Reference numbers (``K7QM-3XTD``) and the secret half of status links."""

from __future__ import annotations

import re
import secrets

from django.db.models import Q

# Crockford-style alphabet without the letters and digits that are confused
# over the phone or in handwriting (0/O, 1/I/L, U/V).
REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTWXYZ23456789"
REFERENCE_LENGTH = 8
_REFERENCE = re.compile(rf"[{REFERENCE_ALPHABET}]{{4}}-[{REFERENCE_ALPHABET}]{{4}}")


def new_reference() -> str:
    """A short random reference such as ``K7QM-3XTD``: not sequential, so it
    says nothing about how many requests exist or which came first."""
    chars = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))
    return f"{chars[:4]}-{chars[4:]}"


def new_status_secret() -> str:
    """The secret half of a status link: 192 random bits."""
    return secrets.token_urlsafe(24)


def _compact(text: str) -> str:
    """The reference's characters alone, upper case: ``k7qm 3xtd`` → ``K7QM3XTD``."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def _is_in_alphabet(compact: str) -> bool:
    return all(ch in REFERENCE_ALPHABET for ch in compact)


def normalize_reference(text: str) -> str:
    """``k7qm 3xtd`` or ``K7QM3XTD`` → ``K7QM-3XTD``; anything else unchanged."""
    compact = _compact(text)
    if len(compact) == REFERENCE_LENGTH and _is_in_alphabet(compact):
        return f"{compact[:4]}-{compact[4:]}"
    return text.strip()


def is_reference(text: str) -> bool:
    """Whether ``text`` is a reference as we print it (``K7QM-3XTD``)."""
    return _REFERENCE.fullmatch(text) is not None


def reference_q(text: str) -> Q | None:
    """What staff typed into a search box as a whole reference (any case,
    with or without the dash or spaces) or its first four or more
    characters, as a filter; None if it cannot be one."""
    compact = _compact(text)
    if not 4 <= len(compact) <= REFERENCE_LENGTH or not _is_in_alphabet(compact):
        return None
    if len(compact) == REFERENCE_LENGTH:
        return Q(reference=normalize_reference(compact))
    prefix = compact[:4] + ("-" + compact[4:] if len(compact) > 4 else "")
    return Q(reference__startswith=prefix)
