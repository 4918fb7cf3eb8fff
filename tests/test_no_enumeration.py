"""A stranger cannot learn from the confirmation page whether a request for
someone already existed: new and repeated submissions get byte-identical
pages but for the reference."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest

pytestmark = pytest.mark.django_db

REFERENCE = re.compile(r"[A-Z2-9]{4}-[A-Z2-9]{4}")


@pytest.fixture(autouse=True)
def _still(time_machine: Any) -> None:
    # The page says when to expect a call, computed when it is shown: pages
    # shown a minute apart differ by that minute, whoever asked. The clock
    # stands still so that only what the page says about the request counts.
    time_machine.move_to(datetime(2026, 6, 16, 14, 0, tzinfo=UTC), tick=False)


def confirmation(client, form_data, **overrides) -> str:
    response = client.post("/reset/", form_data(**overrides))
    assert response.status_code == 303
    return client.get(response["Location"]).content.decode()


def test_it_shows_the_same_page_for_a_new_and_a_repeated_submission(client, form_data):
    first = confirmation(client, form_data, email="known@example.com")
    repeated = confirmation(client, form_data, email="known@example.com", first_name="Someone", phone="555-999-0000")
    unknown = confirmation(client, form_data, email="never.seen@example.com")
    assert REFERENCE.search(first)
    assert REFERENCE.sub("REF", first) == REFERENCE.sub("REF", repeated) == REFERENCE.sub("REF", unknown)


def test_it_shows_the_same_page_to_a_bot_as_to_a_patient(client, form_data):
    patient = confirmation(client, form_data)
    bot = confirmation(client, form_data, email="other@example.com", website="http://spam.example")
    assert REFERENCE.sub("REF", patient) == REFERENCE.sub("REF", bot)


def test_it_answers_a_new_and_a_repeated_submission_with_the_same_redirect_shape(client, form_data):
    first = client.post("/reset/", form_data())
    repeated = client.post("/reset/", form_data())
    assert first.status_code == repeated.status_code == 303
    assert sorted(first.headers) == sorted(repeated.headers)
    assert REFERENCE.sub("REF", first["Location"]) == REFERENCE.sub("REF", repeated["Location"])
