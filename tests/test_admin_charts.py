"""The admin index's charts of the last twelve practice weeks: requests
filed per week by reason, the median working hours to resolve per week and
the guide's yes answers against requests filed, each an SVG image with its
numbers in a table; from three queries whatever the tables hold, kept for
five minutes; nothing for staff who may not see requests; and no "Recent
actions" column beside them."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from requests_app import charts
from requests_app.models import HelpFeedback, Reason, ResetRequest

from .factories import ResetRequestFactory, StaffUserFactory
from .support.processes import offline_production_env, run_manage

pytest_plugins = ["tests.support.postgres"]
pytestmark = pytest.mark.django_db

NY = ZoneInfo("America/New_York")
# A Wednesday afternoon in New York. The twelve weeks run from Monday
# Dec 22, 2025 to this week, that of Monday Mar 9, 2026.
WEDNESDAY = datetime(2026, 3, 11, 15, 0, tzinfo=NY)
WEEKS = [date(2025, 12, 22) + timedelta(weeks=n) for n in range(12)]
THIS_WEEK = "Mar 9 (so far)"
FILED = "Requests filed per week, by reason"
RESOLVE = "Median time to resolve per week, in working hours, and how many were resolved"
GUIDE = 'The guide\'s "Did this solve it?" yes answers and requests filed, per week'


def at(day: int, month: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    """A practice time (New York)."""
    return datetime(year, month, day, hour, minute, tzinfo=NY)


@pytest.fixture
def wednesday(time_machine: Any, settings: Any) -> datetime:
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    settings.PRACTICE_HOURS = "Mon-Fri 08:00-17:00"
    settings.PRACTICE_CLOSED_DATES = ""
    time_machine.move_to(WEDNESDAY, tick=False)
    return WEDNESDAY


def filed(when: datetime, reason: str = Reason.LINK_EXPIRED, **traits: Any) -> ResetRequest:
    return ResetRequestFactory(submitted_at=when, reason=reason, **traits)


def resolved(submitted: datetime, ended: datetime, **fields: Any) -> ResetRequest:
    return ResetRequestFactory(resolved=True, submitted_at=submitted, ended_at=ended, **fields)


def table(page: str, caption: str) -> dict[str, dict[str, str]]:
    """A chart's table of numbers: each row's cells by column, by row header."""
    start = page.index(f">{caption}</caption>")
    body = page[start : page.index("</table>", start)]
    columns = [unescape(c) for c in re.findall(r'<th scope="col">(.*?)</th>', body)]
    rows = {}
    for header, cells in re.findall(r'<tr><th scope="row">(.*?)</th>(.*?)</tr>', body):
        values = [unescape(v) for v in re.findall(r"<td>(.*?)</td>", cells)]
        rows[unescape(header)] = dict(zip(columns[1:], values, strict=True))
    return rows


def chart_block(page: str, key: str) -> str:
    """One chart (reasons, resolve, guide) and what comes with it, up to the next."""
    start = page.index(f'<div class="rr-chart rr-chart-{key}">')
    ends = [page.find(mark, start + 1) for mark in ('<div class="rr-chart rr-chart-', "</section>")]
    return page[start : min(end for end in ends if end > 0)]


def svg(page: str, key: str) -> str:
    """The SVG of one chart."""
    block = chart_block(page, key)
    return block[block.index("<svg") : block.index("</svg>")]


def admin_index(client: Any) -> str:
    response = client.get("/admin/")
    assert response.status_code == 200
    return unescape(response.content.decode())


def week_names() -> list[str]:
    return [f"{monday:%b} {monday.day}" for monday in WEEKS[:-1]] + [THIS_WEEK]


# --- Requests filed per week, by reason -------------------------------------------


def test_it_counts_the_requests_filed_each_week_by_reason_in_the_practice_time_zone(staff_client, wednesday):
    for hour in (9, 14):
        filed(at(2, 3, hour))
    filed(at(5, 3, 11), Reason.SECURITY_CODE)
    # Sunday 23:30 in New York is already Monday in UTC: still the week of Mar 2.
    filed(at(8, 3, 23, 30), Reason.OTHER)
    filed(at(9, 3, 0, 10), Reason.NEVER_RECEIVED)
    # Ended requests count as filed too.
    filed(at(10, 3, 9), Reason.NEVER_RECEIVED, closed=True, ended_at=at(10, 3, 10))
    filed(at(22, 12, 0, 0, year=2025), Reason.SHARED_ACCOUNT)
    filed(at(21, 12, 23, 59, year=2025))  # the Sunday before the twelve weeks

    filed_per_week = table(admin_index(staff_client), FILED)

    assert list(filed_per_week) == week_names()
    assert filed_per_week["Mar 2"] == {
        "Link expired": "2",
        "No email": "0",
        "Security code": "1",
        "Shared login": "0",
        "Other": "1",
        "All": "4",
    }
    assert filed_per_week[THIS_WEEK]["No email"] == "2"
    assert filed_per_week[THIS_WEEK]["All"] == "2"
    assert filed_per_week["Dec 22"]["Shared login"] == "1"
    assert filed_per_week["Dec 22"]["All"] == "1"
    assert {row["All"] for name, row in filed_per_week.items() if name not in ("Mar 2", THIS_WEEK, "Dec 22")} == {"0"}


def test_it_draws_each_week_s_requests_as_a_bar_stacked_by_reason_with_a_legend(staff_client, wednesday):
    filed(at(2, 3, 9))
    filed(at(3, 3, 9), Reason.OTHER)
    filed(at(4, 3, 9), Reason.OTHER)

    page = admin_index(staff_client)
    drawing = svg(page, "reasons")

    bars = re.findall(r'<g class="rr-bar">(.*?)</g>', drawing, re.S)
    assert len(bars) == 12
    segments = re.findall(r'fill="url\(#rr-fill-([a-z_]+)\)"', bars[-2])
    assert segments == ["link_expired", "other"]
    assert re.search(r">3</text>", bars[-2]), "the week's total is written over its bar"
    # Each reason has a colour and a pattern of its own, and the legend names them.
    for reason in Reason.values:
        assert f'<pattern id="rr-fill-{reason}"' in drawing
    legend = page[page.index('<ul class="rr-legend">') :]
    legend = legend[: legend.index("</ul>")]
    assert re.findall(r"</svg>([^<]+)</li>", legend) == [
        "Link expired",
        "No email",
        "Security code",
        "Shared login",
        "Other",
    ]


# --- The median time to resolve, in working hours -----------------------------------


@pytest.fixture
def resolutions(wednesday: datetime) -> None:
    # Week of Mar 2: 4 working hours (Monday 09:00 to 13:00) and 2 (Friday
    # 16:00 to Monday 09:00: one hour on Friday, one on Monday, no weekend).
    resolved(at(2, 3, 9), at(2, 3, 13))
    resolved(at(27, 2, 16), at(2, 3, 9))
    # Closed, not resolved: not in the median.
    ResetRequestFactory(closed=True, submitted_at=at(2, 3, 9), ended_at=at(6, 3, 16))
    # Week of Feb 16: filed and resolved on a Saturday, no working time at all.
    resolved(at(21, 2, 10), at(21, 2, 11))
    # Week of Feb 23: nothing resolved.
    # This week so far: 2.5 working hours.
    resolved(at(10, 3, 8), at(10, 3, 10, 30))
    # Filed long before the twelve weeks, resolved in the first of them:
    # Monday Dec 1 to Friday Dec 19 is 15 working days of 9 hours.
    resolved(at(1, 12, 0, year=2025), at(22, 12, 8, year=2025))
    # Resolved the week before the twelve: not counted.
    resolved(at(15, 12, 9, year=2025), at(19, 12, 9, year=2025))


def test_it_takes_the_median_working_hours_of_the_requests_resolved_each_week(staff_client, resolutions):
    per_week = table(admin_index(staff_client), RESOLVE)

    assert list(per_week) == week_names()
    assert per_week["Mar 2"] == {"Resolved": "2", "Median, working hours": "3"}
    assert per_week[THIS_WEEK] == {"Resolved": "1", "Median, working hours": "2.5"}
    assert per_week["Dec 22"] == {"Resolved": "1", "Median, working hours": "135"}
    assert per_week["Feb 16"] == {"Resolved": "1", "Median, working hours": "0"}


def test_it_leaves_a_gap_for_a_week_with_nothing_resolved_not_a_zero(staff_client, resolutions):
    page = admin_index(staff_client)

    assert table(page, RESOLVE)["Feb 23"] == {"Resolved": "0", "Median, working hours": "none resolved"}
    drawing = svg(page, "resolve")
    # A point for each week with a median (Dec 22, Feb 16 at zero, Mar 2,
    # this week); the line joins only the weeks next to each other that
    # have one: Mar 2 and this week. Nothing is drawn for Feb 23.
    points = re.findall(r'<circle class="rr-marker" cx="([\d.]+)" cy="([\d.]+)"', drawing)
    assert len(points) == 4
    (line,) = re.findall(r'<polyline points="([^"]+)"', drawing)
    assert len(line.split()) == 2
    feb_16, mar_2 = float(points[1][0]), float(points[2][0])
    assert mar_2 - feb_16 == pytest.approx(2 * charts.SLOT, abs=0.1)
    # The resolved count under each week, a 0 under the gap.
    counts = re.findall(r'<text class="rr-below" [^>]*>([^<]*)</text>', drawing)
    assert counts == ["1", "0", "0", "0", "0", "0", "0", "0", "1", "0", "2", "1"]


def test_it_leaves_out_the_weeks_past_the_cap_on_ended_requests_and_says_so(staff_client, resolutions, monkeypatch):
    # Newest first: this week's, Mar 6 (closed), then Mar 2's two: the third
    # read is one of Mar 2's, so that week is only partly read.
    monkeypatch.setattr(charts, "ENDED_CAP", 3)

    page = admin_index(staff_client)

    per_week = table(page, RESOLVE)
    assert per_week[THIS_WEEK] == {"Resolved": "1", "Median, working hours": "2.5"}
    for name in week_names()[:-1]:
        assert per_week[name] == {"Resolved": "not counted", "Median, working hours": "not counted"}, name
    assert "More than 3 requests ended in these weeks" in " ".join(page.split())
    # The other charts are whole.
    assert table(page, FILED)["Mar 2"]["All"] == "2"


# --- The guide's help against requests filed ------------------------------------------


def test_it_sets_the_guide_s_yes_answers_per_week_against_the_requests_filed(staff_client, wednesday):
    for day, step, answer, count in (
        (date(2026, 3, 3), "intake-login", "yes", 3),
        (date(2026, 3, 4), "intake-code", "yes", 2),
        (date(2026, 3, 4), "intake-login", "no", 5),
        (date(2026, 3, 8), "intake-login", "yes", 1),
        (date(2026, 3, 11), "intake-code", "yes", 4),
        (date(2025, 12, 21), "intake-login", "yes", 9),
    ):
        HelpFeedback.objects.create(day=day, step=step, answer=answer, count=count)
    filed(at(2, 3, 9))
    filed(at(6, 3, 9))

    page = admin_index(staff_client)
    per_week = table(page, GUIDE)

    assert list(per_week) == week_names()
    assert per_week["Mar 2"] == {"Said yes": "6", "Requests filed": "2"}
    assert per_week[THIS_WEEK] == {"Said yes": "4", "Requests filed": "0"}
    assert per_week["Dec 22"] == {"Said yes": "0", "Requests filed": "0"}
    drawing = svg(page, "guide")
    assert '<g class="rr-series rr-series-helped">' in drawing
    assert '<g class="rr-series rr-series-filed">' in drawing


# --- Each chart an image with a title, a description and its numbers ------------------------


def test_each_chart_is_an_image_with_a_title_and_a_description_and_the_numbers_beside_it(staff_client, resolutions):
    page = admin_index(staff_client)

    for key, title in (
        ("reasons", "Requests filed per week, by reason"),
        ("resolve", "Median time to resolve per week, in working hours"),
        ("guide", 'The guide\'s "Did this solve it?" yes answers against requests filed, per week'),
    ):
        drawing = svg(page, key)
        opening = drawing[: drawing.index(">")]
        assert 'role="img"' in opening
        assert f'aria-labelledby="rr-chart-{key}-title rr-chart-{key}-desc"' in opening
        assert re.search(r'viewBox="0 0 380 \d+"', opening)
        assert f'<title id="rr-chart-{key}-title">{title}</title>' in drawing
        desc = re.search(rf'<desc id="rr-chart-{key}-desc">([^<]+)</desc>', drawing)
        assert desc and "Dec 22" in desc[1] and "Mar 9" in desc[1]
        # The axis has numbers; the current week is marked.
        assert re.search(r'<text class="rr-tick"[^>]*>0</text>', drawing)
        assert ">so far</text>" in drawing
        # The numbers come after the image, in a table with a caption.
        block = chart_block(page, key)
        numbers = block[block.index("</svg>") :]
        assert numbers.index("<details") < numbers.index("<table>") < numbers.index("</details>")
        assert "<summary>Show the numbers</summary>" in numbers
        assert re.search(r'<caption id="rr-chart-[a-z]+-caption">[^<]+</caption>', numbers)
    assert "Median working hours from filing to resolution" in svg(page, "resolve")
    assert page.count('<th scope="col">Week of</th>') == 3
    assert "updated every 5 minutes" in page


# --- Queries and the cache ------------------------------------------------------------------


def seed(count: int, offset: int = 0) -> None:
    """``count`` requests over the twelve weeks, in every status, and a
    day's answers in the guide for each."""
    for n in range(offset, offset + count):
        submitted = WEDNESDAY - timedelta(hours=7 * n + 1)
        reason = Reason.values[n % len(Reason.values)]
        if n % 3 == 0:
            filed(submitted, reason)
        elif n % 3 == 1:
            resolved(submitted, min(submitted + timedelta(hours=n % 40 + 1), WEDNESDAY), reason=reason)
        else:
            filed(submitted, reason, closed=True, ended_at=submitted + timedelta(hours=2))
        HelpFeedback.objects.get_or_create(
            day=(submitted - timedelta(hours=5)).date(), step="intake-login", answer="yes", defaults={"count": 2}
        )


def test_it_reads_the_charts_numbers_with_the_same_three_queries_for_10_or_200_requests(
    staff_client, wednesday, django_assert_num_queries
):
    counted = []
    for count, offset in ((10, 0), (190, 10)):
        seed(count, offset)
        caches["fragments"].clear()
        with CaptureQueriesContext(connection) as queries:
            admin_index(staff_client)
        counted.append(len(queries))
    assert ResetRequest.objects.count() == 200
    assert counted[0] == counted[1]

    with django_assert_num_queries(3):
        data = charts.compute_chart_data(timezone.now())
    assert (
        sum(week.filed_total for week in data.weeks)
        == ResetRequest.objects.filter(submitted_at__gte=datetime(2025, 12, 22, tzinfo=NY)).count()
    )


def test_it_keeps_the_charts_numbers_for_five_minutes(staff_client, wednesday, time_machine):
    filed(at(10, 3, 9))
    with CaptureQueriesContext(connection) as first:
        assert table(admin_index(staff_client), FILED)[THIS_WEEK]["All"] == "1"
    filed(at(11, 3, 14))

    with CaptureQueriesContext(connection) as second:
        page = admin_index(staff_client)
    assert table(page, FILED)[THIS_WEEK]["All"] == "1"
    assert len(first) - len(second) == 3
    assert "Counted at 15:00, updated every 5 minutes." in " ".join(page.split())

    time_machine.shift(timedelta(minutes=5, seconds=1))
    page = admin_index(staff_client)
    assert table(page, FILED)[THIS_WEEK]["All"] == "2"
    assert "Counted at 15:05" in page


def test_it_starts_a_new_week_at_monday_midnight_whatever_is_cached(staff_client, time_machine, settings):
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    time_machine.move_to(at(15, 3, 23, 58), tick=False)  # a Sunday
    assert list(table(admin_index(staff_client), FILED))[-1] == THIS_WEEK

    time_machine.move_to(at(16, 3, 0, 1), tick=False)
    assert list(table(admin_index(staff_client), FILED))[-2:] == ["Mar 9", "Mar 16 (so far)"]


# --- Who sees them, and what is no longer there -----------------------------------------------


def test_it_shows_no_charts_and_spends_no_query_on_them_for_staff_who_may_not_see_requests(client, wednesday):
    seed(10)
    client.force_login(StaffUserFactory(username="clerk"))

    with CaptureQueriesContext(connection) as queries:
        page = admin_index(client)

    assert "rr-chart" not in page
    assert 'role="img"' not in page
    assert not [
        q
        for q in queries.captured_queries
        if "requests_app_resetrequest" in q["sql"] or "requests_app_helpfeedback" in q["sql"]
    ]


def test_it_has_no_recent_actions_column_on_the_admin_index(staff_client, superuser, client, wednesday):
    client.force_login(superuser)
    for page in (admin_index(staff_client), admin_index(client)):
        assert "Recent actions" not in page
        assert 'id="recent-actions-module"' not in page
        assert 'id="content-related"' not in page
        assert 'class="colM"' in page
        assert 'href="/admin/requests_app/resetrequest/"' in page


# --- On PostgreSQL ------------------------------------------------------------------------------

PG_SCRIPT = """
import json
from datetime import timedelta
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from requests_app import charts
from requests_app.models import HelpFeedback, ResetRequest
from requests_app.practice_time import practice_day_start, practice_today

now = timezone.now()
today = practice_today(now)
monday = practice_day_start(today - timedelta(days=today.weekday()))
def make(n, submitted, reason="link_expired", ended=None):
    extra = {}
    if ended is not None:
        extra = dict(status="resolved", is_open=False, outcome="reinvited", identity_dob_matched=True,
                     identity_phone_matched=True, identity_verified_at=submitted, ended_at=ended)
    ResetRequest.objects.create(
        reference=f"TEST-{n:04d}", reason=reason, first_name="A", last_name="B", email=f"p{n}@example.com",
        phone="+15550000000", appointment_date=submitted.date(), submitted_at=submitted,
        due_at=submitted + timedelta(hours=24), **extra)

# Half an hour before and after this week's Monday 00:00, practice time.
make(1, monday - timedelta(minutes=30), "other")
make(2, monday + timedelta(minutes=30), "security_code")
make(3, monday - timedelta(days=10), ended=monday - timedelta(days=3))
HelpFeedback.objects.create(day=today, step="intake-login", answer="yes", count=4)
with CaptureQueriesContext(connection) as queries:
    data = charts.compute_chart_data(now)
plans = []
with connection.cursor() as cursor:
    cursor.execute("SET enable_seqscan = off")
    for sql in [q["sql"] for q in queries.captured_queries if "requests_app_resetrequest" in q["sql"]]:
        cursor.execute("EXPLAIN " + sql)
        plans.append("\\n".join(row[0] for row in cursor.fetchall()))
last, before = data.weeks[-1], data.weeks[-2]
print("RESULT=" + json.dumps({
    "this_week": last.filed, "last_week": before.filed, "helped": last.helped,
    "resolved": [w.resolved for w in data.weeks], "queries": len(queries), "plans": plans,
}))
"""


@pytest.mark.services
def test_it_counts_by_practice_week_from_the_indexes_on_postgresql(postgres_database, tmp_path):
    env = offline_production_env(
        var_dir=tmp_path / "var",
        database_url=postgres_database,
        PRACTICE_TIME_ZONE="America/New_York",
    )

    result = run_manage("shell", "-c", PG_SCRIPT, env=env)

    numbers = json.loads(re.search(r"RESULT=(.*)", result.stdout)[1])
    assert numbers["this_week"]["security_code"] == 1 and sum(numbers["this_week"].values()) == 1
    assert numbers["last_week"]["other"] == 1 and sum(numbers["last_week"].values()) == 1
    assert numbers["helped"] == 4
    assert sum(numbers["resolved"]) == 1
    assert numbers["queries"] == 3
    filed_plan, ended_plan = numbers["plans"]
    assert "rr_queue_order" in filed_plan, filed_plan
    assert "rr_ended" in ended_plan, ended_plan
