"""The practice's clock: its time zone (PRACTICE_TIME_ZONE), its today and
when one of its days starts. One place, so that the 48-hour window, the
form's date rules, the daily digest, the dashboard's week and the CSV export
agree on what "today" is."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


def practice_zone() -> ZoneInfo:
    return ZoneInfo(settings.PRACTICE_TIME_ZONE)


def practice_today(now: datetime | None = None) -> date:
    """The date at the practice now (or at ``now``)."""
    return timezone.localdate(now or timezone.now(), practice_zone())


def practice_day_start(day: date) -> datetime:
    """Midnight at the practice on ``day``."""
    return datetime.combine(day, time.min, tzinfo=practice_zone())
