"""The practice's working hours, the clock the due time and the patients'
promise count in.

``PRACTICE_HOURS`` names the hours, in the practice's time zone: entries
separated by commas, each a day or a range of days and one span of time,
such as ``Mon-Thu 08:00-12:00, Mon-Thu 13:00-17:00, Fri 08:00-13:00`` (a
lunch break is the gap between two entries). ``PRACTICE_CLOSED_DATES``
names the days off on top of them (holidays), as ISO dates separated by
commas. settings.py checks both at start-up with the two parsers here, and
start-up stops, naming the setting and the entry, on a bad one.

The arithmetic works on each day's spans in the practice's wall-clock time
and turns each span's two ends into instants, so a clock change moves
nothing a person would notice: a request filed on the Friday before one is
due at the same wall-clock time on Monday as on any other weekend. Time is
counted between instants (in UTC): a span that a clock change shortens
counts for the hours it really has.

Written here rather than taken from a library: businesstimedelta, the usual
choice, has had no release since 2019 and works in pytz; workalendar and
python-dateutil's rules know days, not hours of them; the packages that add
working hours with split days and closed dates on zoneinfo are young pre-1.0
ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

DEFAULT_PRACTICE_HOURS = "Mon-Fri 08:00-17:00"

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ENTRY = re.compile(
    r"(?P<first>[a-z]{3})(?:\s*-\s*(?P<last>[a-z]{3}))?\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})",
    re.IGNORECASE,
)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

Span = tuple[time, time]
# Monday first, as date.weekday() counts: each day's spans in order.
Week = tuple[tuple[Span, ...], ...]


def _bad_hours(entry: str, why: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"PRACTICE_HOURS: {entry!r} {why}. Write entries such as 'Mon-Fri 08:00-17:00' or 'Sat 09:00-12:00', "
        "separated by commas."
    )


def _clock(text: str, entry: str) -> time:
    hour, minute = (int(part) for part in text.split(":"))
    if hour > 23 or minute > 59:
        raise _bad_hours(entry, f"has {text}, which is not a time of day (00:00 to 23:59)")
    return time(hour, minute)


def parse_practice_hours(value: str) -> Week:
    """PRACTICE_HOURS as the spans of each weekday. An empty value is the
    default, ``Mon-Fri 08:00-17:00``; a malformed entry, a span that ends
    before it starts, or two that overlap raise ImproperlyConfigured naming
    the entry. Spans that meet (``08:00-12:00`` and ``12:00-17:00``) are
    joined."""
    value = value.strip() or DEFAULT_PRACTICE_HOURS
    week: list[list[tuple[time, time, str]]] = [[] for _ in _DAYS]
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        match = _ENTRY.fullmatch(entry)
        if match is None:
            raise _bad_hours(entry, "is not a day or days and a span of time")
        names = [match["first"].lower(), (match["last"] or match["first"]).lower()]
        for name in names:
            if name not in _DAYS:
                raise _bad_hours(entry, f"has {name!r}, which is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
        first, last = (_DAYS.index(name) for name in names)
        if last < first:
            raise _bad_hours(entry, "names its days backwards (the week runs Mon to Sun)")
        start, end = _clock(match["start"], entry), _clock(match["end"], entry)
        if end <= start:
            raise _bad_hours(entry, "ends before it starts (a span stays within one day)")
        for day in range(first, last + 1):
            week[day].append((start, end, entry))
    if not any(week):
        raise _bad_hours(value, "names no working time")
    joined: list[tuple[Span, ...]] = []
    for day, spans in enumerate(week):
        spans.sort()
        merged: list[tuple[time, time, str]] = []
        for start, end, entry in spans:
            if merged and start < merged[-1][1]:
                raise _bad_hours(entry, f"overlaps {merged[-1][2]!r} on {_DAY_NAMES[day]}")
            if merged and start == merged[-1][1]:
                merged[-1] = (merged[-1][0], end, entry)
            else:
                merged.append((start, end, entry))
        joined.append(tuple((start, end) for start, end, _ in merged))
    return tuple(joined)


def parse_closed_dates(value: str) -> frozenset[date]:
    """PRACTICE_CLOSED_DATES as a set of dates; empty for none. An entry that
    is not an ISO date (``2026-12-25``) raises ImproperlyConfigured naming it."""
    closed = set()
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            if not _ISO_DATE.fullmatch(entry):
                raise ValueError
            closed.add(date.fromisoformat(entry))
        except ValueError:
            raise ImproperlyConfigured(
                f"PRACTICE_CLOSED_DATES: {entry!r} is not a date written as YYYY-MM-DD (e.g. 2026-12-25)."
            ) from None
    return frozenset(closed)


@dataclass(frozen=True)
class WorkingHours:
    """A weekly schedule less closed dates, in one time zone. Each weekday
    with working time is assumed (the parser makes sure one has some)."""

    week: Week
    closed: frozenset[date]
    zone: ZoneInfo

    def _spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """``day``'s working spans as instants (UTC), in order."""
        if day in self.closed:
            return []
        spans = []
        for start, end in self.week[day.weekday()]:
            # Each end read on the wall clock of that day: a time a clock
            # change skips or repeats is taken as the clock before it shows it.
            begins = datetime.combine(day, start, tzinfo=self.zone).astimezone(UTC)
            ends = datetime.combine(day, end, tzinfo=self.zone).astimezone(UTC)
            if ends > begins:
                spans.append((begins, ends))
        return spans

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The instant ``amount`` of working time after ``start`` (before it,
        for a negative amount), in the practice's time zone. Counting starts
        at the next working moment, so a request filed at night is counted
        from the morning; an amount that runs out at the end of a span ends
        there, not at the start of the next."""
        if timezone.is_naive(start):
            raise ValueError("add needs an aware datetime.")
        cursor = start.astimezone(UTC)
        if not amount:
            return cursor.astimezone(self.zone)
        if amount < timedelta(0):
            return self._subtract(cursor, -amount)
        remaining, day = amount, self._local_date(cursor)
        while True:
            for begins, ends in self._spans(day):
                if ends <= cursor:
                    continue
                begins = max(begins, cursor)
                if remaining <= ends - begins:
                    return (begins + remaining).astimezone(self.zone)
                remaining -= ends - begins
            day += timedelta(days=1)

    def _subtract(self, cursor: datetime, amount: timedelta) -> datetime:
        remaining, day = amount, self._local_date(cursor)
        while True:
            for begins, ends in reversed(self._spans(day)):
                if begins >= cursor:
                    continue
                ends = min(ends, cursor)
                if remaining <= ends - begins:
                    return (ends - remaining).astimezone(self.zone)
                remaining -= ends - begins
            day -= timedelta(days=1)

    def between(self, start: datetime, end: datetime) -> timedelta:
        """The working time from ``start`` to ``end``; negative when ``end``
        comes first."""
        if timezone.is_naive(start) or timezone.is_naive(end):
            raise ValueError("between needs aware datetimes.")
        if end < start:
            return -self.between(end, start)
        total = timedelta(0)
        day, last = self._local_date(start), self._local_date(end)
        while day <= last:
            for begins, ends in self._spans(day):
                overlap = min(ends, end) - max(begins, start)
                if overlap > timedelta(0):
                    total += overlap
            day += timedelta(days=1)
        return total


@lru_cache(maxsize=8)
def _working_hours(hours: str, closed: str, zone: str) -> WorkingHours:
    return WorkingHours(parse_practice_hours(hours), parse_closed_dates(closed), ZoneInfo(zone))


def practice_hours() -> WorkingHours:
    """The practice's working hours, as the settings now name them."""
    return _working_hours(settings.PRACTICE_HOURS, settings.PRACTICE_CLOSED_DATES, settings.PRACTICE_TIME_ZONE)


def _duration(hours: timedelta | float) -> timedelta:
    return hours if isinstance(hours, timedelta) else timedelta(hours=hours)


def add_working_hours(start: datetime, hours: timedelta | float) -> datetime:
    """``hours`` of the practice's working time after ``start``."""
    return practice_hours().add(start, _duration(hours))


def working_time_between(start: datetime, end: datetime) -> timedelta:
    """The practice's working time from ``start`` to ``end`` (negative if
    ``end`` comes first)."""
    return practice_hours().between(start, end)


def due_after(start: datetime | None = None) -> datetime:
    """RESET_SLA_HOURS of working time after ``start`` (now): the due time
    of a request filed then, and the time its patient is told to expect."""
    return add_working_hours(start or timezone.now(), settings.RESET_SLA_HOURS)
