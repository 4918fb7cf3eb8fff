"""The admin index's three charts: requests filed per week by reason, the
median time to resolve per week (in working hours), and the guide's "Did
this solve it?" yes answers against the requests filed. The queries, and
the geometry of the SVG that templates/admin/requests_app/includes/charts.html
draws from it.

Drawn on the server as plain SVG, with no charting library: a dozen bars
and two lines are little geometry, and pygal, the well-kept pure-Python
one, writes a <style> element and a tooltip script into each SVG, which the
staff pages' CSP (style and script from our own files only) refuses and
the admin's dark theme would not reach. The page stays free of JavaScript.

The numbers come from three queries whatever the tables hold, each reading
only the twelve weeks' rows from an index, and are kept in the
``fragments`` cache for CACHE_SECONDS: the admin index is every staff
member's home page, and a chart five minutes old is as good as a fresh one.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.core.cache import caches
from django.db.models import Count, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone

from .admin.queue import REASON_SHORT
from .models import HelpFeedback, Reason, ResetRequest, Status
from .practice_time import practice_day_start, practice_today, practice_zone
from .working_hours import working_time_between

# Twelve practice weeks (Monday to Sunday), the current one included.
WEEKS = 12
CACHE_SECONDS = 5 * 60
# Bump when ChartData changes shape: a process may still hold the old one.
_CACHE_KEY = "dashboard-charts:v1"
# The median's working hours are computed in Python, from one (submitted,
# ended) pair per request that ended in the twelve weeks. A practice ends a
# few dozen requests a week, some hundreds in twelve; the cap is ten times a
# busy practice's volume, so that a flood (a spam wave closed in bulk) costs
# a bounded read. Past it, the oldest weeks are left out, and say so.
ENDED_CAP = 5000

# Each reason's colour (Okabe and Ito's palette, told apart with the common
# kinds of colour blindness) and a pattern on top of it, so that colour is not
# the only cue: solid, diagonal lines, dots, horizontal lines, cross-hatch.
REASON_FILLS: dict[str, tuple[str, str]] = {
    Reason.LINK_EXPIRED: ("#0072B2", "solid"),
    Reason.NEVER_RECEIVED: ("#E69F00", "diagonal"),
    Reason.SECURITY_CODE: ("#56B4E9", "dots"),
    Reason.SHARED_ACCOUNT: ("#009E73", "horizontal"),
    Reason.OTHER: ("#CC79A7", "cross"),
}


# --- The numbers ------------------------------------------------------------


@dataclass(frozen=True)
class WeekNumbers:
    """One practice week's numbers. ``resolved`` and ``median_hours`` are
    None for a week the ENDED_CAP left out; ``median_hours`` is None too for
    a week in which nothing was resolved (a gap in the chart, not a zero)."""

    monday: date
    so_far: bool
    filed: dict[str, int]
    resolved: int | None
    median_hours: float | None
    helped: int

    @property
    def filed_total(self) -> int:
        return sum(self.filed.values())


@dataclass(frozen=True)
class ChartData:
    weeks: tuple[WeekNumbers, ...]
    computed_at: datetime
    ended_capped: bool


def chart_weeks(now: datetime) -> list[date]:
    """The Mondays of the last WEEKS practice weeks, oldest first."""
    today = practice_today(now)
    this_monday = today - timedelta(days=today.weekday())
    return [this_monday - timedelta(weeks=WEEKS - 1 - n) for n in range(WEEKS)]


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def chart_data(now: datetime | None = None) -> ChartData:
    """The charts' numbers, from the cache when it has them for this practice
    hour (and they are less than CACHE_SECONDS old), else from three queries.
    The key names the practice's date and hour, so a new week starts on time
    whatever is cached."""
    now = now or timezone.now()
    local = timezone.localtime(now, practice_zone())
    key = f"{_CACHE_KEY}:{local.tzinfo}:{local:%Y-%m-%dT%H}"
    cache = caches["fragments"]
    data: ChartData | None = cache.get(key)
    if data is None:
        data = compute_chart_data(now)
        cache.set(key, data, CACHE_SECONDS)
    return data


def compute_chart_data(now: datetime) -> ChartData:
    """Three queries, each over the twelve weeks' rows only:

    - requests filed, counted per practice week and reason in the database;
    - (status, submitted, ended) of the requests that ended in the twelve
      weeks, newest first, at most ENDED_CAP: the working hours of each
      resolved one are counted in Python (working_hours.py has the rules);
    - the guide's yes answers, summed per practice day (at most 84 rows).
    """
    mondays = chart_weeks(now)
    since = practice_day_start(mondays[0])
    zone = practice_zone()

    filed: dict[date, dict[str, int]] = {monday: dict.fromkeys(Reason.values, 0) for monday in mondays}
    # submitted_at has no index of its own; rr_queue_order (-is_open,
    # submitted_at) serves the range once is_open is pinned to its two
    # values: two range reads (open, ended) instead of the whole table.
    by_week_and_reason = (
        ResetRequest.objects.filter(is_open__in=[True, False], submitted_at__gte=since)
        .annotate(week=TruncWeek("submitted_at", tzinfo=zone))
        .values("week", "reason")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in by_week_and_reason:
        week = filed.get(timezone.localtime(row["week"], zone).date())
        if week is not None and row["reason"] in week:
            week[row["reason"]] += row["n"]

    # Filtered on ended_at alone so that the rr_ended index is the one to
    # read (with status in the filter SQLite prefers rr_status_queue, which
    # holds every resolved request ever); closed ones are dropped here.
    ended = list(
        ResetRequest.objects.filter(ended_at__gte=since)
        .order_by("-ended_at")
        .values_list("status", "submitted_at", "ended_at")[: ENDED_CAP + 1]
    )
    capped = len(ended) > ENDED_CAP
    del ended[ENDED_CAP:]
    hours: dict[date, list[float]] = defaultdict(list)
    for status, submitted_at, ended_at in ended:
        if status == Status.RESOLVED and ended_at is not None:
            worked = working_time_between(submitted_at, ended_at)
            hours[_monday(practice_today(ended_at))].append(max(worked.total_seconds(), 0) / 3600)
    # Past the cap, the week of the oldest row read may be partly read and
    # the weeks before it not at all: they are left out.
    complete_from = _monday(practice_today(ended[-1][2])) + timedelta(weeks=1) if capped else mondays[0]

    helped: dict[date, int] = dict.fromkeys(mondays, 0)
    yes_by_day = (
        HelpFeedback.objects.filter(day__gte=mondays[0], answer=HelpFeedback.Answer.YES)
        .values("day")
        .annotate(n=Sum("count"))
        .order_by()
    )
    for row in yes_by_day:
        monday = _monday(row["day"])
        if monday in helped:
            helped[monday] += row["n"]

    weeks = []
    for monday in mondays:
        counted = monday >= complete_from
        week_hours = hours.get(monday, [])
        weeks.append(
            WeekNumbers(
                monday=monday,
                so_far=monday == mondays[-1],
                filed=filed[monday],
                resolved=len(week_hours) if counted else None,
                median_hours=statistics.median(week_hours) if counted and week_hours else None,
                helped=helped[monday],
            )
        )
    return ChartData(weeks=tuple(weeks), computed_at=now, ended_capped=capped)


# --- The geometry -----------------------------------------------------------

# The SVG's own units; it scales to the width of its column (viewBox), so
# these are sized for a column of 320 to 420 px, a phone's included.
WIDTH = 380
PLOT_LEFT = 50
PLOT_RIGHT = 372
PLOT_TOP = 30
PLOT_HEIGHT = 150
PLOT_BOTTOM = PLOT_TOP + PLOT_HEIGHT
SLOT = (PLOT_RIGHT - PLOT_LEFT) / WEEKS
# Below the plot: the week labels, three rows of them (day, month, "so far").
_LABELS_HEIGHT = 46
BAR_WIDTH = 18
# Under a week that ENDED_CAP left out, in place of its count.
NOT_COUNTED = "\N{EN DASH}"


def _n(value: float) -> str:
    """A coordinate as SVG wants it (never localised: "12.5", not "12,5")."""
    return f"{value:.1f}".removesuffix(".0")


def format_hours(value: float) -> str:
    """Working hours to one decimal: 4, 4.5, 12.3."""
    return f"{round(value, 1):.1f}".removesuffix(".0")


def format_week(monday: date) -> str:
    return f"{monday:%b} {monday.day}"


@dataclass(frozen=True)
class Tick:
    y: str
    label: str


@dataclass(frozen=True)
class WeekLabel:
    x: str
    day: str
    month: str
    so_far: bool


@dataclass(frozen=True)
class Segment:
    reason: str
    y: str
    height: str


@dataclass(frozen=True)
class Bar:
    x: str
    width: str
    segments: tuple[Segment, ...]
    label_x: str
    label_y: str
    total: int


@dataclass(frozen=True)
class Point:
    x: str
    y: str
    label: str
    label_y: str


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    lines: tuple[str, ...]  # polyline points, one per run of weeks with a value
    points: tuple[Point, ...]


@dataclass(frozen=True)
class BelowValue:
    x: str
    label: str


@dataclass(frozen=True)
class LegendItem:
    key: str
    label: str


@dataclass(frozen=True)
class Table:
    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]  # (row header, cells)


@dataclass(frozen=True)
class Chart:
    key: str
    heading: str
    title: str
    desc: str
    y_title: str
    # Where the week labels start, under the plot (and under the row of
    # counts, for the chart that has one).
    labels_top: float
    ticks: tuple[Tick, ...]
    weeks: tuple[WeekLabel, ...]
    table: Table
    legend: tuple[LegendItem, ...] = ()
    bars: tuple[Bar, ...] = ()
    series: tuple[Series, ...] = ()
    below_title: str = ""
    below: tuple[BelowValue, ...] = ()

    @property
    def view_box(self) -> str:
        return f"0 0 {WIDTH} {_n(self.labels_top + _LABELS_HEIGHT)}"

    @property
    def plot_bottom(self) -> str:
        return _n(PLOT_BOTTOM)

    @property
    def tick_x(self) -> str:
        return _n(PLOT_LEFT - 5)

    @property
    def day_y(self) -> str:
        return _n(self.labels_top + 13)

    @property
    def month_y(self) -> str:
        return _n(self.labels_top + 26)

    @property
    def so_far_y(self) -> str:
        return _n(self.labels_top + 39)

    @property
    def below_y(self) -> str:
        return _n(PLOT_BOTTOM + 13)

    @property
    def plot_left(self) -> str:
        return _n(PLOT_LEFT)

    @property
    def plot_right(self) -> str:
        return _n(PLOT_RIGHT)

    @property
    def plot_top(self) -> str:
        return _n(PLOT_TOP)


def _scale(largest: float, *, whole: bool) -> tuple[float, list[float]]:
    """The y axis's top and its ticks: 0 and steps of 1, 2 or 5 times a
    power of ten, four or five of them above 0."""
    largest = max(largest, 4)
    rough = largest / 4
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    if whole:
        step = max(1, round(step))
    top = step * math.ceil(largest / step - 1e-9)
    return top, [step * k for k in range(round(top / step) + 1)]


def _x(index: int) -> float:
    """The middle of week ``index``'s slot."""
    return PLOT_LEFT + SLOT * (index + 0.5)


def _y(value: float, top: float) -> float:
    return PLOT_TOP + PLOT_HEIGHT * (1 - value / top)


def _ticks(values: list[float], top: float) -> tuple[Tick, ...]:
    return tuple(Tick(y=_n(_y(v, top)), label=format_hours(v)) for v in values)


def _week_labels(weeks: tuple[WeekNumbers, ...]) -> tuple[WeekLabel, ...]:
    """The day of each Monday, with its month under the first week and
    under each week that starts a month; "so far" under the current one."""
    labels = []
    for index, week in enumerate(weeks):
        new_month = index == 0 or week.monday.month != weeks[index - 1].monday.month
        labels.append(
            WeekLabel(
                x=_n(_x(index)),
                day=str(week.monday.day),
                month=f"{week.monday:%b}" if new_month else "",
                so_far=week.so_far,
            )
        )
    return tuple(labels)


def _row_header(week: WeekNumbers) -> str:
    return f"{format_week(week.monday)} (so far)" if week.so_far else format_week(week.monday)


def _span(weeks: tuple[WeekNumbers, ...]) -> str:
    first, last = format_week(weeks[0].monday), format_week(weeks[-1].monday)
    return f"the {WEEKS} weeks from the week of {first} to this week (of {last}, so far)"


def reasons_chart(data: ChartData) -> Chart:
    weeks = data.weeks
    top, values = _scale(max(w.filed_total for w in weeks), whole=True)
    bars = []
    for index, week in enumerate(weeks):
        segments = []
        level = 0
        for reason in Reason.values:
            count = week.filed[reason]
            if not count:
                continue
            upper = _y(level + count, top)
            segments.append(Segment(reason=reason, y=_n(upper), height=_n(_y(level, top) - upper)))
            level += count
        bars.append(
            Bar(
                x=_n(_x(index) - BAR_WIDTH / 2),
                width=_n(BAR_WIDTH),
                segments=tuple(segments),
                label_x=_n(_x(index)),
                label_y=_n(_y(level, top) - 4),
                total=level,
            )
        )
    total = sum(w.filed_total for w in weeks)
    by_reason = {reason: sum(w.filed[reason] for w in weeks) for reason in Reason.values}
    busiest = max(weeks, key=lambda w: w.filed_total)
    desc = f"Requests filed in {_span(weeks)}: {total} in all"
    if total:
        desc += (
            f"; the busiest week was that of {format_week(busiest.monday)}, with {busiest.filed_total}. By reason: "
            + ", ".join(f"{REASON_SHORT[Reason(r)]} {n}" for r, n in sorted(by_reason.items(), key=lambda i: -i[1]))
        )
    desc += f". This week so far: {weeks[-1].filed_total}."
    return Chart(
        key="reasons",
        heading="Requests filed per week, by reason",
        title="Requests filed per week, by reason",
        desc=desc,
        y_title="Requests",
        labels_top=PLOT_BOTTOM,
        ticks=_ticks(values, top),
        weeks=_week_labels(weeks),
        bars=tuple(bars),
        legend=tuple(LegendItem(key=r, label=REASON_SHORT[Reason(r)]) for r in Reason.values),
        table=Table(
            caption="Requests filed per week, by reason",
            columns=("Week of", *(REASON_SHORT[Reason(r)] for r in Reason.values), "All"),
            rows=tuple(
                (_row_header(w), (*(str(w.filed[r]) for r in Reason.values), str(w.filed_total))) for w in weeks
            ),
        ),
    )


def _series(key: str, label: str, values: Sequence[float | None], top: float, text: Sequence[str]) -> Series:
    """A line through the weeks that have a value, broken where one has none."""
    lines: list[str] = []
    run: list[str] = []
    points = []
    for index, value in enumerate(values):
        if value is None:
            if run:
                lines.append(" ".join(run))
            run = []
            continue
        x, y = _n(_x(index)), _y(value, top)
        run.append(f"{x},{_n(y)}")
        points.append(Point(x=x, y=_n(y), label=text[index], label_y=_n(y - 7)))
    if run:
        lines.append(" ".join(run))
    return Series(key=key, label=label, lines=tuple(line for line in lines if " " in line), points=tuple(points))


def resolve_chart(data: ChartData) -> Chart:
    weeks = data.weeks
    medians = [w.median_hours for w in weeks]
    top, values = _scale(max((m for m in medians if m is not None), default=0), whole=False)
    text = [format_hours(m) if m is not None else "" for m in medians]
    known = [m for m in medians if m is not None]
    resolved = sum(w.resolved or 0 for w in weeks)
    none_weeks = sum(1 for w in weeks if w.resolved == 0)
    desc = f"Median working hours from filing to resolution of the requests resolved each week, over {_span(weeks)}. "
    if known:
        desc += (
            f"{resolved} resolved in all; weekly medians from {format_hours(min(known))} "
            f"to {format_hours(max(known))} working hours"
        )
    else:
        desc += "Nothing was resolved in these weeks"
    if known and none_weeks:
        desc += f"; {none_weeks} {'week' if none_weeks == 1 else 'weeks'} with none resolved (gaps in the line)"
    last = weeks[-1]
    if last.median_hours is not None:
        desc += f". This week so far: {format_hours(last.median_hours)} working hours over {last.resolved} resolved."
    else:
        desc += ". This week so far: none resolved."

    def median_cell(w: WeekNumbers) -> str:
        if w.resolved is None:
            return "not counted"
        return format_hours(w.median_hours) if w.median_hours is not None else "none resolved"

    return Chart(
        key="resolve",
        heading="Median time to resolve per week",
        title="Median time to resolve per week, in working hours",
        desc=desc,
        y_title="Working hours",
        labels_top=PLOT_BOTTOM + 16,
        ticks=_ticks(values, top),
        weeks=_week_labels(weeks),
        series=(_series("median", "Median working hours", medians, top, text),),
        below_title="resolved",
        below=tuple(
            BelowValue(x=_n(_x(i)), label=NOT_COUNTED if w.resolved is None else str(w.resolved))
            for i, w in enumerate(weeks)
        ),
        table=Table(
            caption="Median time to resolve per week, in working hours, and how many were resolved",
            columns=("Week of", "Resolved", "Median, working hours"),
            rows=tuple(
                (_row_header(w), ("not counted" if w.resolved is None else str(w.resolved), median_cell(w)))
                for w in weeks
            ),
        ),
    )


def guide_chart(data: ChartData) -> Chart:
    weeks = data.weeks
    helped = [float(w.helped) for w in weeks]
    filed = [float(w.filed_total) for w in weeks]
    top, values = _scale(max(helped + filed), whole=True)
    helped_total, filed_total = sum(w.helped for w in weeks), sum(w.filed_total for w in weeks)
    desc = (
        f'Per week over {_span(weeks)}: how many patients answered "Did this solve it?" with yes in the guide, '
        f"against how many reset requests were filed. {helped_total} said yes and {filed_total} requests were filed "
        f"in all. This week so far: {weeks[-1].helped} yes, {weeks[-1].filed_total} filed."
    )
    return Chart(
        key="guide",
        heading="The guide's help against requests filed",
        title='The guide\'s "Did this solve it?" yes answers against requests filed, per week',
        desc=desc,
        y_title="Answers, requests",
        labels_top=PLOT_BOTTOM,
        ticks=_ticks(values, top),
        weeks=_week_labels(weeks),
        series=(
            _series("helped", 'Said yes, "this solved it"', helped, top, [""] * WEEKS),
            _series("filed", "Requests filed", filed, top, [""] * WEEKS),
        ),
        legend=(
            LegendItem(key="helped", label='Said yes, "this solved it"'),
            LegendItem(key="filed", label="Requests filed"),
        ),
        table=Table(
            caption='The guide\'s "Did this solve it?" yes answers and requests filed, per week',
            columns=("Week of", "Said yes", "Requests filed"),
            rows=tuple((_row_header(w), (str(w.helped), str(w.filed_total))) for w in weeks),
        ),
    )


def dashboard_charts(now: datetime | None = None) -> dict[str, object]:
    """What charts.html draws: the three charts, when their numbers were
    counted, and whether the cap on ended requests left weeks out."""
    data = chart_data(now)
    return {
        "charts": (reasons_chart(data), resolve_chart(data), guide_chart(data)),
        "reason_fills": [(reason, *REASON_FILLS[reason]) for reason in Reason.values],
        "computed_at": timezone.localtime(data.computed_at, practice_zone()),
        "cache_minutes": CACHE_SECONDS // 60,
        "ended_capped": data.ended_capped,
        "ended_cap": ENDED_CAP,
        "weeks": WEEKS,
    }
