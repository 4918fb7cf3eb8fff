"""What each public page costs in queries. Patients reach these pages
without an account; a query more on each is a cost paid on every visit, so
each budget is written down here and a page that goes over it fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from requests_app.models import ResetRequest

from .factories import ResetRequestFactory

pytestmark = pytest.mark.django_db

# The guided help, the empty form and the confirmation read nothing.
GUIDE_BUDGET = 0
FORM_BUDGET = 0
SUBMITTED_BUDGET = 0
# The status page: the request, by its reference (a unique index), and the
# practice's messages to the patient (by the request, an index).
STATUS_BUDGET = 2
# A new request: a savepoint around the submission, the patient's open
# request looked for (SELECT … FOR UPDATE), the request, the acknowledgment
# and the staff notification in the outbox (one insert), the "submitted"
# and "email queued" events (one insert), the savepoint released.
SUBMIT_BUDGET = 6
# The same patient again while that request is open: the savepoint, the
# open request found, the acknowledgment, the "submitted again" and "email
# queued" events, the savepoint released.
DUPLICATE_BUDGET = 5
# /healthz: SELECT 1.
HEALTHZ_BUDGET = 1


@pytest.fixture(autouse=True)
def a_busy_table() -> None:
    """Budgets hold with a thousand requests already there."""
    call_command("seed_demo", "--requests", "1000", "--seed", "4", stdout=None)


def within(budget: int, django_assert_max_num_queries: Any, do: Callable[[], Any]) -> Any:
    with django_assert_max_num_queries(budget):
        return do()


def test_it_shows_the_guide_within_its_budget(client: Client, django_assert_max_num_queries):
    response = within(GUIDE_BUDGET, django_assert_max_num_queries, lambda: client.get("/"))

    assert response.status_code == 200


def test_it_shows_the_form_within_its_budget(client: Client, django_assert_max_num_queries):
    response = within(FORM_BUDGET, django_assert_max_num_queries, lambda: client.get("/reset/"))

    assert response.status_code == 200


def test_it_files_a_request_within_its_budget(client: Client, form_data, django_assert_max_num_queries):
    # What runs after commit (handing the outbox ids to the broker) is not
    # the page's: in production the worker sends, in its own process.
    response = within(SUBMIT_BUDGET, django_assert_max_num_queries, lambda: client.post("/reset/", form_data()))

    assert response.status_code in (302, 303)
    assert ResetRequest.objects.filter(email=form_data()["email"]).count() == 1


def test_it_attaches_a_repeated_request_within_its_budget(client: Client, form_data, django_assert_max_num_queries):
    client.post("/reset/", form_data())

    response = within(DUPLICATE_BUDGET, django_assert_max_num_queries, lambda: client.post("/reset/", form_data()))

    assert response.status_code in (302, 303)
    request = ResetRequest.objects.get(email=form_data()["email"])
    assert request.events.filter(kind="duplicate").count() == 1


def test_it_answers_the_health_check_within_its_budget(client: Client, django_assert_max_num_queries):
    response = within(HEALTHZ_BUDGET, django_assert_max_num_queries, lambda: client.get("/healthz"))

    assert response.status_code == 200


def test_it_shows_the_confirmation_within_its_budget(client: Client, django_assert_max_num_queries):
    reference = ResetRequestFactory().reference

    response = within(
        SUBMITTED_BUDGET, django_assert_max_num_queries, lambda: client.get(f"/reset/submitted/{reference}/")
    )

    assert response.status_code == 200


def test_it_shows_the_status_within_its_budget(client: Client, django_assert_max_num_queries):
    rr = ResetRequestFactory()

    response = within(STATUS_BUDGET, django_assert_max_num_queries, lambda: client.get(rr.get_status_url()))

    assert response.status_code == 200
    assert rr.reference in response.content.decode()
