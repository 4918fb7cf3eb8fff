"""One canonical spelling of a patient's email address.

What is stored, what the duplicate rule compares, what the rate limit counts
and what Django's mail layer puts on the SMTP envelope must be the same
address. Django's ``sanitize_address`` rewrites what it is given: it decodes
RFC 2047 encoded words and drops quotes and comments in the local part (via
Python's header parser), and converts the domain with the standard
library's IDNA codec (``django.utils.encoding.punycode``). An address typed
as ``=?utf-8?q?maria?=@example.com``, or with a fullwidth letter in its
domain, is delivered to ``maria@example.com``, so it must be stored, matched
and counted as that, or refused.

``canonical_email`` accepts only addresses the mail layer sends unchanged
once canonical, and gives back that canonical form: the local part ASCII
(dot-atom only), lower case; the domain as ASCII (IDNA), lower case.

The domain uses the standard library's ``encodings.idna`` (IDNA 2003), on
purpose: it is the codec Django's mail layer uses, so the stored address is
exactly the envelope's. IDNA 2003 and IDNA 2008 (what browsers and
registries use today) disagree on a few characters (ß, ς, and the zero-width
joiners): 2003 maps ``straße.de`` to ``strasse.de``, which may be someone
else's domain. Those are refused rather than sent to a domain the patient
did not mean.
"""

from __future__ import annotations

import re
import unicodedata
from email import errors as email_errors
from email._header_value_parser import get_mailbox
from email.utils import getaddresses

from django.core.exceptions import ValidationError
from django.core.mail.message import sanitize_address
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

MAX_LENGTH = 254

INVALID = validate_email.message  # Django's own "Enter a valid email address."
NOT_JUST_AN_ADDRESS = _(
    "Enter only the email address itself, like name@example.com: no name, quotation marks, brackets, spaces or codes."
)
LOCAL_PART_NOT_ASCII = _(
    "The part of the email address before the @ can only use the letters a to z, numbers and signs "
    "such as . - _ +. Please check it, or call the practice if your address has other letters."
)
DOMAIN_NOT_USABLE = _(
    "Please check the part of the email address after the @ (for example, example.com). We cannot "
    "send email to it as it is written."
)
TOO_LONG = _("This email address is too long for us to send email to. Please check it.")

# Django's dot-atom, without its quoted-string alternative.
_DOT_ATOM = re.compile(r"[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+(\.[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+)*\Z")
# Quotes, comments, angle brackets, display names and address lists: an
# address with one of these is more than a bare address.
_NOT_IN_A_BARE_ADDRESS = frozenset('"()<>,;:\\')
# Where IDNA 2003 (the mail layer's) and IDNA 2008 disagree.
_IDNA_DEVIATIONS = frozenset("ßẞς\u200c\u200d")
# A canonical address with nothing in it for the mail layer to read twice:
# lower-case letters, digits and . _ + - before the @ (dots only between
# them), letters, digits and hyphens in the dot-separated labels (of at
# most 63) after it — nearly every address patients type.
_PLAIN_LOCAL = r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*"
_PLAIN_DOMAIN = r"[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+"
_PLAIN_ADDRESS = re.compile(rf"{_PLAIN_LOCAL}@{_PLAIN_DOMAIN}\Z")
_GMAIL = "gmail.com"
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def canonical_email(text: str) -> str:
    """The canonical form of the address ``text``, or ValidationError
    saying what is wrong with it.

    >>> canonical_email(" Maria.Lopez@EXÄMPLE.com ")
    'maria.lopez@xn--exmple-cua.com'
    """
    value = text.strip()
    if not value or "@" not in value:
        raise ValidationError(INVALID, code="invalid")
    if any(_is_hidden_or_space(char) for char in value) or _NOT_IN_A_BARE_ADDRESS.intersection(value):
        raise ValidationError(NOT_JUST_AN_ADDRESS, code="not_bare")
    if "=?" in value:  # an RFC 2047 encoded word, which the header parser decodes
        raise ValidationError(NOT_JUST_AN_ADDRESS, code="encoded_word")
    local, _at, domain = value.rpartition("@")
    if not local or not domain or "@" in local:
        raise ValidationError(INVALID, code="invalid")
    if not local.isascii():
        raise ValidationError(LOCAL_PART_NOT_ASCII, code="local_not_ascii")
    if not _DOT_ATOM.match(local):
        raise ValidationError(INVALID, code="invalid")
    address = f"{local.lower()}@{_ascii_domain(domain)}"
    if len(address) > MAX_LENGTH:
        raise ValidationError(TOO_LONG, code="too_long")
    validate_email(address)  # the domain's shape (labels, a top-level domain)
    if not _sent_unchanged(address):
        raise ValidationError(NOT_JUST_AN_ADDRESS, code="rewritten")
    return address


def rate_limit_key(email: str) -> str:
    """The key the per-email limit counts ``email`` under: its canonical
    form without a ``+tag``, and for Gmail (gmail.com, googlemail.com)
    without dots and in gmail.com, so that the variants of one inbox count
    as one. An address that cannot be canonicalised counts as itself, in
    lower case."""
    try:
        address = canonical_email(email)
    except ValidationError:
        return email.strip().lower()
    local, _at, domain = address.rpartition("@")
    base, plus, _tag = local.partition("+")
    if plus and base:
        local = base
    if domain in _GMAIL_DOMAINS:
        domain = _GMAIL
        local = local.replace(".", "") or local
    return f"{local}@{domain}"


def is_plain(address: str) -> bool:
    """Whether ``address`` has the plain shape above. The mail layer's
    parsers (sanitize_address, Python's header parser) give such an address
    back as it is — the test suite checks it against them — so a caller may
    skip them: they cost most of a submission's address checks (run twice:
    the form, then the per-email limit's key) and a tenth of a millisecond
    per email on the SMTP envelope."""
    return bool(_PLAIN_ADDRESS.match(address))


def _is_hidden_or_space(char: str) -> bool:
    # Cc controls (line breaks, tabs, NUL), Cf format characters (bidi
    # overrides, zero-width), surrogates, private use, unassigned; and any
    # kind of space or line separator.
    return char.isspace() or unicodedata.category(char)[0] in "CZ"


def _ascii_domain(domain: str) -> str:
    """``domain`` as the mail layer writes it (IDNA 2003), lower case."""
    if domain.startswith("[") or domain.endswith("]"):
        # An address literal ([192.0.2.1]): no portal invitation goes to one.
        raise ValidationError(DOMAIN_NOT_USABLE, code="domain")
    if _IDNA_DEVIATIONS.intersection(unicodedata.normalize("NFKC", domain)):
        raise ValidationError(DOMAIN_NOT_USABLE, code="domain")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
        # Labels already in punycode (xn--…) must be valid IDNA as well:
        # decoded and encoded again they come back the same.
        if ascii_domain.encode("ascii").decode("idna").encode("idna").decode("ascii").lower() != ascii_domain:
            raise UnicodeError("does not round-trip")
    except UnicodeError as exc:
        raise ValidationError(DOMAIN_NOT_USABLE, code="domain") from exc
    return ascii_domain


def _sent_unchanged(address: str) -> bool:
    """Whether Django's mail layer carries ``address`` as it is: on the SMTP
    envelope (``sanitize_address``) and in the To header (``getaddresses``,
    then ``sanitize_address``), with Python's header parser reading the
    same local part and domain and finding nothing to correct."""
    return is_plain(address) or _parsers_agree(address)


def _parsers_agree(address: str) -> bool:
    """_sent_unchanged the long way: what the parsers make of ``address``."""
    try:
        token, rest = get_mailbox(address)
        if rest or token.all_defects or token.display_name:
            return False
        if (token.local_part, token.domain) != tuple(address.rsplit("@", 1)):
            return False
        if getaddresses([address]) != [("", address)]:
            return False
        return bool(sanitize_address(address, "utf-8") == address)
    except (email_errors.HeaderParseError, ValueError, IndexError, TypeError):
        return False
