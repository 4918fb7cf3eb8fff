"""What a staff page costs in queries, and that the cost does not grow with
the table: the list (as it opens, filtered, searched), a request's page
(short and long timelines), its action pages (a message, waiting), the admin
index with its charts and the CSV export cost exactly as many queries with
1,000 requests as with 10.

The budgets are exact: a new query on one of these pages is a decision to
make on purpose (and to write down here), not a side effect.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from requests_app import services
from requests_app.models import FamilyMember, ResetRequest

from .factories import OutboundEmailFactory, ResetRequestFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/requests_app/resetrequest/"

# Every staff page starts with the session, the user, the user's and the
# group's permissions, and ends by saving the session (an UPDATE between a
# savepoint and its release, here inside the test's transaction): sessions
# slide, SESSION_SAVE_EVERY_REQUEST for the idle timeout.
AROUND_EVERY_PAGE = 4 + 3
# The list: the capped count (LIMIT 1001) and the page of rows with their
# assignees (select_related). Filtered or searched, the same two.
LIST_BUDGET = AROUND_EVERY_PAGE + 2
# The export: the count and the insert of its audit record, then one
# streamed query (its filters and search).
EXPORT_BUDGET = AROUND_EVERY_PAGE + 3
# A request's page: the request (with assignee and verifier), the view event
# written for the audit, the timeline with its actors, the emails, the family
# members, the messages sent to the patient (with their senders), the
# patient's earlier requests and the next request in the queue.
CHANGE_BUDGET = AROUND_EVERY_PAGE + 8


def seed(count: int) -> None:
    """``count`` more demo requests in every status, assigned among five staff."""
    for number in range(5 - get_user_model().objects.filter(is_staff=True).count() + 1):
        StaffUserFactory(username=f"demo-staff-{number}", first_name="Demo")
    call_command("seed_demo", "--requests", str(count), stdout=io.StringIO())


def count_queries(do: Callable[[], Any]) -> int:
    with CaptureQueriesContext(connection) as queries:
        do()
    return len(queries)


def get(client: Client, url: str, params: dict[str, str] | None = None) -> Callable[[], Any]:
    def do() -> Any:
        response = client.get(url, params or {})
        assert response.status_code == 200, (url, params, response.status_code)
        if response.streaming:
            b"".join(response.streaming_content)
        return response

    return do


def a_reference() -> str:
    return ResetRequest.objects.order_by("pk").values_list("reference", flat=True).first()


LIST_PAGES: list[tuple[str, Callable[[], dict[str, str]], int]] = [
    ("as it opens", dict, LIST_BUDGET),
    ("filtered by status", lambda: {"status__exact": "in_progress"}, LIST_BUDGET),
    ("open only", lambda: {"state": "open"}, LIST_BUDGET),
    ("overdue", lambda: {"overdue": "yes"}, LIST_BUDGET),
    ("assigned to nobody", lambda: {"assigned": "nobody"}, LIST_BUDGET),
    ("searched by reference", lambda: {"q": a_reference()}, LIST_BUDGET),
    ("searched by last name", lambda: {"q": "Garcia"}, LIST_BUDGET),
    (
        "searched by reference, lower case without the dash",
        lambda: {"q": a_reference().replace("-", "").lower()},
        LIST_BUDGET,
    ),
]


def test_it_shows_the_list_with_the_same_queries_for_10_and_1000_requests(staff_client):
    seed(10)
    with_ten = {page: count_queries(get(staff_client, LIST, params())) for page, params, _ in LIST_PAGES}
    seed(990)
    assert ResetRequest.objects.count() == 1000

    with_thousand = {page: count_queries(get(staff_client, LIST, params())) for page, params, _ in LIST_PAGES}

    budgets = {page: budget for page, _, budget in LIST_PAGES}
    assert with_ten == budgets
    assert with_thousand == budgets
    for page, params, _ in LIST_PAGES:
        assert get(staff_client, LIST, params())().context["cl"].result_list, f"{page}: nothing listed"


def test_it_exports_10_or_1000_requests_as_csv_with_the_same_queries(staff_client):
    seed(10)
    with_ten = count_queries(get(staff_client, LIST + "export.csv"))
    seed(990)

    with_thousand = count_queries(get(staff_client, LIST + "export.csv"))

    assert (with_ten, with_thousand) == (EXPORT_BUDGET, EXPORT_BUDGET)


def request_with_events(staff: Any, notes: int) -> ResetRequest:
    """A request in progress with ``notes`` notes on its timeline (plus its
    start and assignment), a family member and an email."""
    rr = ResetRequestFactory()
    services.reset_start(reset_id=rr.pk, actor=staff)
    for number in range(notes):
        services.reset_add_note(reset_id=rr.pk, actor=staff, text=f"Called, no answer ({number})")
    FamilyMember.objects.create(reset=rr, first_name="Luis", last_name="Lopez")
    OutboundEmailFactory(reset=rr)
    return rr


def warm_up(client: Client, staff: Any) -> None:
    """A running server has looked up the request's content type (Django
    caches it for the process) long before: so has the test, before counting."""
    get(client, f"{LIST}{request_with_events(staff, notes=0).pk}/change/")()


def test_it_shows_a_request_with_2_or_200_events_with_the_same_queries(staff_client, staff):
    seed(10)
    warm_up(staff_client, staff)
    short = request_with_events(staff, notes=0)
    long = request_with_events(staff, notes=198)
    assert (short.events.count(), long.events.count()) == (2, 200)
    seed(990)

    counts = [count_queries(get(staff_client, f"{LIST}{rr.pk}/change/")) for rr in (short, long)]

    assert counts == [CHANGE_BUDGET, CHANGE_BUDGET]


def test_it_shows_a_request_page_with_the_same_queries_whoever_wrote_its_timeline(staff_client, staff):
    """Each event's actor comes with the event (select_related), not one
    query per staff member on the timeline."""
    warm_up(staff_client, staff)
    rr = request_with_events(staff, notes=0)
    for number in range(20):
        colleague = StaffUserFactory(username=f"colleague-{number}")
        services.reset_add_note(reset_id=rr.pk, actor=colleague, text="Tried too")

    assert count_queries(get(staff_client, f"{LIST}{rr.pk}/change/")) == CHANGE_BUDGET


# The action pages of a request: the request, then what each form shows —
# the message page its offered templates; reopen and wait nothing more.
ACTION_PAGES_BUDGETS = {"message": AROUND_EVERY_PAGE + 2, "wait": AROUND_EVERY_PAGE + 1}
# The admin index: the tiles' aggregate, on SQLite the median's middle rows,
# the held count and the guide's answers; then the charts' three (requests
# filed per week and reason, the requests that ended in the twelve weeks,
# the guide's answers per day) when their five-minute cache is cold.
INDEX_BUDGET = AROUND_EVERY_PAGE + 4 + 3


def test_a_requests_action_pages_cost_the_same_with_10_or_1000_requests(staff_client):
    seed(10)
    rr = ResetRequestFactory(in_progress=True)
    pages = {name: f"{LIST}{rr.pk}/{name}/" for name in ACTION_PAGES_BUDGETS}
    with_ten = {name: count_queries(get(staff_client, page)) for name, page in pages.items()}
    seed(990)

    with_thousand = {name: count_queries(get(staff_client, page)) for name, page in pages.items()}

    assert with_ten == with_thousand == ACTION_PAGES_BUDGETS


def test_the_admin_index_with_its_charts_costs_the_same_with_10_or_1000_requests(staff_client):
    seed(10)
    ResetRequestFactory(resolved=True)  # something to take the median of
    get(staff_client, "/admin/")()  # the content type and permission lookups a running server has cached
    caches["fragments"].clear()
    with_ten = count_queries(get(staff_client, "/admin/"))
    seed(990)
    caches["fragments"].clear()

    with_thousand = count_queries(get(staff_client, "/admin/"))

    assert (with_ten, with_thousand) == (INDEX_BUDGET, INDEX_BUDGET)
