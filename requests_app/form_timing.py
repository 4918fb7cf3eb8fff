"""The reset form's signed timing value: when the page was served.

It travels in the form itself (a hidden field), not in a cookie that a
restored tab or a strict browser may have lost. A form sent back sooner than
SUBMIT_MIN_SECONDS after it was served, or without a value we signed, looks
automated; one served more than a day ago has expired (the page asks the
patient to look it over and send it again).
"""

from __future__ import annotations

import enum
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.http import QueryDict
from django.utils import timezone

FIELD_NAME = "form_started"
_SALT = "requests_app.reset_form.started"
MAX_AGE = timedelta(hours=24)


class Timing(enum.Enum):
    OK = "ok"
    TOO_FAST = "too_fast"
    MISSING = "missing"  # absent, forged or garbled: not from our page
    EXPIRED = "expired"


def new_timing_value() -> str:
    """A value for the form being served now."""
    return signing.dumps(timezone.now().timestamp(), salt=_SALT, compress=False)


def check_timing(data: QueryDict) -> Timing:
    """How the form's timing value reads. With SUBMIT_MIN_SECONDS at 0 the
    check is off: every form is OK."""
    if settings.SUBMIT_MIN_SECONDS <= 0:
        return Timing.OK
    try:
        served = float(signing.loads(data.get(FIELD_NAME, ""), salt=_SALT, max_age=MAX_AGE))
    except signing.SignatureExpired:
        return Timing.EXPIRED
    except (signing.BadSignature, TypeError, ValueError):
        return Timing.MISSING
    if timezone.now().timestamp() - served < settings.SUBMIT_MIN_SECONDS:
        return Timing.TOO_FAST
    return Timing.OK
