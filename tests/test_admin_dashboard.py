"""The queue at a glance on the admin index: open, overdue, held, waiting,
resolved this week, the median time to resolve and how many the guide
helped, from four queries, each
linking to the list filtered the same way; nothing for staff who may not
see requests."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from requests_app import selectors
from requests_app.models import ResetRequest

from .factories import ResetRequestFactory, StaffUserFactory
from .support.processes import offline_production_env, run_manage

pytest_plugins = ["tests.support.postgres"]
pytestmark = pytest.mark.django_db

NY = ZoneInfo("America/New_York")
# A Wednesday afternoon; that week's Monday 00:00 in New York (EDT since the
# Sunday before) is 04:00 UTC.
WEDNESDAY = datetime(2026, 3, 11, 15, 0, tzinfo=NY)
MONDAY_START = datetime(2026, 3, 9, 0, 0, tzinfo=NY)
LIST = "/admin/requests_app/resetrequest/"


@pytest.fixture
def wednesday(time_machine: Any, settings: Any) -> datetime:
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    time_machine.move_to(WEDNESDAY, tick=False)
    return WEDNESDAY


def resolved(*, ended: datetime, took: timedelta = timedelta(hours=3)) -> ResetRequest:
    return ResetRequestFactory(resolved=True, submitted_at=ended - took, ended_at=ended)


def late(**fields: Any) -> ResetRequest:
    submitted = timezone.now() - timedelta(days=2)
    return ResetRequestFactory(submitted_at=submitted, due_at=submitted + timedelta(hours=24), **fields)


@pytest.fixture
def queue(wednesday: datetime) -> dict[str, list[ResetRequest]]:
    """A mix of every status around the week's and the window's edges."""
    return {
        "open": [
            ResetRequestFactory(),  # new, not yet due
            late(),  # new, overdue
            late(in_progress=True),  # in progress, overdue
            late(waiting=True),  # waiting: past due_at, but the clock is paused
            ResetRequestFactory(waiting=True),
        ],
        "resolved_this_week": [
            resolved(ended=MONDAY_START + timedelta(minutes=1)),
            resolved(ended=wednesday - timedelta(hours=1)),
        ],
        "not_this_week": [
            # Sunday 23:59 in New York is already Monday 04:59 in UTC.
            resolved(ended=MONDAY_START - timedelta(minutes=1)),
            ResetRequestFactory(closed=True, ended_at=wednesday - timedelta(hours=2)),
        ],
    }


# --- The numbers --------------------------------------------------------------


def test_it_counts_open_overdue_waiting_and_resolved_since_monday_in_the_practice_time_zone(queue):
    numbers = selectors.queue_dashboard()

    assert numbers["open"] == 5
    assert numbers["overdue"] == 2
    assert numbers["waiting"] == 2
    assert numbers["resolved_this_week"] == 2
    assert numbers["week_start"] == MONDAY_START


def test_it_starts_the_week_on_monday_at_midnight_even_on_a_monday(time_machine, settings):
    settings.PRACTICE_TIME_ZONE = "America/New_York"
    time_machine.move_to(MONDAY_START + timedelta(minutes=30), tick=False)
    resolved(ended=MONDAY_START + timedelta(minutes=10))
    resolved(ended=MONDAY_START - timedelta(minutes=10))

    numbers = selectors.queue_dashboard()

    assert numbers["resolved_this_week"] == 1
    assert numbers["week_start"] == MONDAY_START


def test_it_takes_the_median_of_an_even_number_of_resolutions_as_the_mean_of_the_middle_two(wednesday):
    for hours in (10, 1, 4, 2):
        resolved(ended=wednesday - timedelta(days=hours), took=timedelta(hours=hours))

    assert selectors.queue_dashboard()["median_time_to_resolve"] == timedelta(hours=3)


def test_it_takes_the_median_over_the_last_30_days_of_resolutions_only(wednesday):
    for minutes in (90, 300, 45):
        resolved(ended=wednesday - timedelta(days=3), took=timedelta(minutes=minutes))
    resolved(ended=wednesday - timedelta(days=31), took=timedelta(minutes=1))
    resolved(ended=wednesday - timedelta(days=32), took=timedelta(minutes=2))
    ResetRequestFactory(closed=True, submitted_at=wednesday - timedelta(days=9), ended_at=wednesday)

    numbers = selectors.queue_dashboard()

    assert numbers["median_time_to_resolve"] == timedelta(minutes=90)
    assert numbers["resolved_in_window"] == 3


def test_it_has_no_median_when_nothing_was_resolved_in_30_days(wednesday):
    resolved(ended=wednesday - timedelta(days=40))
    ResetRequestFactory()

    assert selectors.queue_dashboard()["median_time_to_resolve"] is None


def test_it_counts_with_four_queries_whatever_the_table_holds(queue, django_assert_num_queries):
    for days in range(1, 25):
        resolved(ended=timezone.now() - timedelta(days=days))

    # The requests' counts, the median's middle rows, the held submissions,
    # the guide's "helped" answers.
    with django_assert_num_queries(4):
        selectors.queue_dashboard()


# --- On the admin index --------------------------------------------------------


def tiles(page: str) -> dict[str, tuple[str, str | None]]:
    """Each tile's value and link, by its key."""
    found = {}
    for key, body in re.findall(r'<li class="rr-tile rr-tile-([a-z_]+)[^"]*">(.*?)</li>', page, re.S):
        link = re.search(r'href="([^"]+)"', body)
        value = re.search(r'<span class="rr-tile-value">([^<]*)</span>', body)
        assert value, body
        found[key] = (value[1].strip(), unescape(link[1]) if link else None)
    return found


def test_it_shows_the_queue_on_top_of_the_admin_index_with_the_app_list_below(staff_client, queue):
    page = staff_client.get("/admin/").content.decode()

    shown = tiles(page)
    assert {key: value for key, (value, _) in shown.items()} == {
        "open": "5",
        "overdue": "2",
        "held": "0",
        "helped": "0",
        "waiting": "2",
        "resolved_this_week": "2",
        "median": "3 h",
    }
    assert page.index('class="rr-dashboard"') < page.index(f'href="{LIST}"')
    assert "rr-tile-overdue rr-tile-alert" in page


def test_it_links_each_count_to_the_list_filtered_the_same_way(staff_client, queue):
    shown = tiles(staff_client.get("/admin/").content.decode())

    for key in ("open", "overdue", "waiting", "resolved_this_week"):
        count, link = shown[key]
        assert link is not None and link.startswith(LIST + "?"), key
        response = staff_client.get(link)
        assert response.status_code == 200, (key, link)
        listed = response.context["cl"].result_list
        assert len(listed) == int(count), (key, link)
        # The list says it is filtered, with a way back to everything.
        assert response.context["cl"].has_active_filters, (key, link)
    assert shown["open"][1] == LIST + "?state=open"
    assert shown["overdue"][1] == LIST + "?overdue=yes"
    assert shown["waiting"][1] == LIST + "?status__exact=waiting"
    assert shown["resolved_this_week"][1] == LIST + "?status__exact=resolved&state=ended_this_week"
    this_week = staff_client.get(shown["resolved_this_week"][1]).context["cl"].result_list
    assert {rr.pk for rr in this_week} == {rr.pk for rr in queue["resolved_this_week"]}


def test_it_shows_a_dash_for_the_median_when_nothing_was_resolved(staff_client, wednesday):
    ResetRequestFactory()

    shown = tiles(staff_client.get("/admin/").content.decode())

    assert shown["median"] == ("—", None)
    assert shown["open"][0] == "1"


def test_it_spends_at_most_two_queries_of_the_index_on_the_counts(staff_client, queue):
    # The charts under the tiles keep their numbers for a few minutes
    # (tests/test_admin_charts.py counts their queries): a first view fills it.
    staff_client.get("/admin/")

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get("/admin/")

    assert response.status_code == 200
    on_requests = [q["sql"] for q in queries.captured_queries if "requests_app_resetrequest" in q["sql"]]
    assert 1 <= len(on_requests) <= 2


def test_it_shows_no_counts_to_staff_who_may_not_see_requests(client, queue):
    clerk = StaffUserFactory(username="clerk")
    client.force_login(clerk)

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/")

    assert response.status_code == 200
    assert b"rr-dashboard" not in response.content
    assert b"rr-tile" not in response.content
    assert not [q for q in queries.captured_queries if "requests_app_resetrequest" in q["sql"]]


# --- On PostgreSQL: percentile_cont in the one aggregate query --------------------

PG_SCRIPT = """
import json
from datetime import timedelta
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from requests_app import selectors
from requests_app.models import ResetRequest

now = timezone.now()
def make(n, status, took_hours=None, ended_days_ago=None, **fields):
    submitted = now - timedelta(days=(ended_days_ago or 0), hours=took_hours or 1)
    ended = submitted + timedelta(hours=took_hours) if took_hours is not None else None
    extra = {}
    if status == "resolved":
        extra = dict(outcome="reinvited", identity_dob_matched=True, identity_phone_matched=True,
                     identity_verified_at=submitted)
    if status == "closed":
        extra = dict(close_reason="duplicate")
    ResetRequest.objects.create(
        reference=f"TEST-{n:04d}", status=status, is_open=status in ("new", "in_progress", "waiting"),
        reason="link_expired", first_name="A", last_name="B", email=f"p{n}@example.com", phone="+15550000000",
        appointment_date=submitted.date(), submitted_at=submitted, due_at=submitted + timedelta(hours=24),
        ended_at=ended, **extra, **fields)

for n, hours in enumerate((10, 1, 4, 2)):
    make(n, "resolved", took_hours=hours, ended_days_ago=n + 1)
make(10, "resolved", took_hours=500, ended_days_ago=40)
make(11, "closed", took_hours=1, ended_days_ago=1)
make(12, "new")
make(13, "waiting", waiting_since=now)
with CaptureQueriesContext(connection) as queries:
    numbers = selectors.queue_dashboard()
print("RESULT=" + json.dumps({
    "median_seconds": numbers["median_time_to_resolve"].total_seconds(),
    "resolved_in_window": numbers["resolved_in_window"],
    "open": numbers["open"],
    "waiting": numbers["waiting"],
    "queries": [q["sql"] for q in queries.captured_queries],
}))
"""


@pytest.mark.services
def test_it_takes_the_median_with_percentile_cont_in_one_query_on_postgresql(postgres_database, tmp_path):
    env = offline_production_env(var_dir=tmp_path / "var", database_url=postgres_database)

    result = run_manage("shell", "-c", PG_SCRIPT, env=env)

    numbers = json.loads(re.search(r"RESULT=(.*)", result.stdout)[1])
    assert numbers["median_seconds"] == 3 * 3600
    assert numbers["resolved_in_window"] == 4
    assert (numbers["open"], numbers["waiting"]) == (2, 1)
    # The requests' counts and median in one query; the held submissions'
    # and the guide's counts beside it.
    on_requests = [sql for sql in numbers["queries"] if "requests_app_resetrequest" in sql]
    assert len(on_requests) == 1
    assert "percentile_cont(0.5) WITHIN GROUP" in on_requests[0]
    assert len(numbers["queries"]) == 3
