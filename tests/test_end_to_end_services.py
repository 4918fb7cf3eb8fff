"""The tracker end to end on real services: a patient submits the
form to gunicorn, PostgreSQL stores it, Redis carries the task, a separately
started ``celery worker`` sends the acknowledgment, and an SMTP server
receives it."""

from __future__ import annotations

import re

import pytest

from .support.patients import patient_form, personal_data_of
from .support.polling import wait_for
from .support.processes import STAFF_NOTIFY_EMAIL
from .support.stack import Stack

pytest_plugins = ["tests.support.stack"]
pytestmark = pytest.mark.services

# The local Redis (TEST_REDIS_URL), on a database of this module's own.
STACK_REDIS = "shared"


def test_it_delivers_the_acknowledgment_with_the_reference_and_a_working_status_link(stack: Stack) -> None:
    form = patient_form()

    submitted = stack.submit(form)

    confirmation = submitted.browser.get(submitted.response.location)
    assert confirmation.status == 200
    assert submitted.reference in confirmation.text
    [ack] = stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    assert ack.rcpt_tos == (form["email"],)
    assert form["email"] in str(ack.message["To"])
    assert ack.contains(submitted.reference)
    links = re.findall(re.escape(stack.site_url) + r"/status/[A-Za-z0-9_-]+/", ack.text())
    assert links, f"no status link built from SITE_URL in:\n{ack.text()}"
    assert len(set(links)) == 1, links
    status_page = stack.browser().get(links[0])
    assert status_page.status == 200
    assert stack.acknowledgment(submitted.reference)["state"] == "sent"


def test_it_keeps_the_date_of_birth_and_phone_out_of_the_acknowledgment(stack: Stack) -> None:
    form = patient_form(date_of_birth="1968-03-29", phone="617.555.0187")
    pii = personal_data_of(form)

    submitted = stack.submit(form)

    [ack] = stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    assert ack.contains(submitted.reference)  # the search does find what is there
    for label in (
        "date of birth (ISO)",
        "date of birth (US)",
        "date of birth (US, short)",
        "phone (as typed)",
        "phone (E.164)",
        "phone (digits)",
        "phone (dashed)",
    ):
        assert not ack.contains(pii[label]), f"the acknowledgment contains the {label}: {pii[label]}"


def test_it_notifies_staff_of_the_new_request(stack: Stack) -> None:
    form = patient_form()

    submitted = stack.submit(form)

    stack.smtp.wait_for_messages(form["email"], diagnostics=stack.diagnostics)
    wait_for(
        lambda: [m for m in stack.smtp.to(STAFF_NOTIFY_EMAIL) if m.contains(submitted.reference)],
        timeout=30,
        what=f"the staff notification of {submitted.reference}",
        diagnostics=stack.diagnostics,
    )
    stack.settle()
    notices = [m for m in stack.smtp.to(STAFF_NOTIFY_EMAIL) if m.contains(submitted.reference)]
    assert len(notices) == 1
    assert notices[0].rcpt_tos == (STAFF_NOTIFY_EMAIL,)
