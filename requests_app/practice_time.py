"""The practice's clock: its time zone (PRACTICE_TIME_ZONE), its today, when
one of its days starts, and when a visit's invitation link has expired. One
place, so that the 48-hour window, the form's date rules, the daily digest,
the dashboard's week and the CSV export agree on what "today" is."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
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


def week_start(now: datetime | None = None) -> datetime:
    """Monday 00:00 of the current week in the practice's time zone."""
    today = practice_today(now)
    return practice_day_start(today - timedelta(days=today.weekday()))


# The earliest and latest ends access_window_ends gives: instants every time
# zone can show (none is a day off UTC), for visits at either end of the
# calendar, where the real instant is out of datetime's range or too close
# to its end to be shown east of UTC.
_LONG_AGO = datetime.min.replace(tzinfo=UTC) + timedelta(days=2)
_FAR_OFF = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)


def access_window_ends(appointment_date: date) -> datetime:
    """When the invitation link of a visit on ``appointment_date`` has
    surely expired: ACCESS_LINK_HOURS after the start of that day in the
    practice's time zone.

    Defined for every date, never an OverflowError: the form lets through
    only the last ten years, but for the first or last days of the calendar
    (years 1 and 9999) the answer is "long ago" or "as far off as can be"."""
    zone = practice_zone()
    try:
        day_start = practice_day_start(appointment_date)
        # Arithmetic on an aware datetime moves the wall clock, not elapsed
        # time: count real hours in UTC, or a clock change shifts the window
        # by an hour.
        ends = min(day_start.astimezone(UTC) + timedelta(hours=settings.ACCESS_LINK_HOURS), _FAR_OFF)
    except OverflowError:
        ends = _LONG_AGO if appointment_date.year < 5000 else _FAR_OFF
    return ends.astimezone(zone)
