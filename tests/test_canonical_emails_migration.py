"""Migration 0006_canonical_emails: existing rows' addresses in the canonical
form the form now stores; open requests that become one patient's two are
closed as duplicates of the earliest first (the one-open-request index would
refuse the update otherwise); what cannot be canonicalised is left alone.

Driven with Django's MigrationExecutor: migrate back to 0005, make rows with
odd spellings through the historical models, migrate to 0006, look."""

# These tests are about lookalike characters (fullwidth letters, typographic
# apostrophes): they are written as such, on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

APP = "requests_app"
BEFORE = [(APP, "0005_held_submissions_and_export_records")]
AFTER = [(APP, "0006_canonical_emails")]
DOB = date(1980, 4, 23)
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate the test database to ``targets``; the apps as they were there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old_apps() -> Iterator[Any]:
    apps = migrate(BEFORE)
    yield apps
    # Back to the latest, whatever else has been added since.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def make_request(apps: Any, reference: str, email: str, *, minutes: int, **fields: Any) -> Any:
    ResetRequest = apps.get_model(APP, "ResetRequest")
    submitted = T0 + timedelta(minutes=minutes)
    values: dict[str, Any] = {
        "reference": reference,
        "status": "new",
        "is_open": True,
        "reason": "link_expired",
        "first_name": "Maria",
        "last_name": "Lopez",
        "date_of_birth": DOB,
        "email": email,
        "phone": "+15552013344",
        "appointment_date": date(2026, 11, 10),
        "submitted_at": submitted,
        "due_at": submitted + timedelta(hours=72),
    }
    values.update(fields)
    return ResetRequest.objects.create(**values)


def test_it_canonicalises_requests_and_closes_the_later_of_two_open_ones_for_one_patient(old_apps):
    first = make_request(old_apps, "AAAA-2222", "maria@example.com", minutes=0)
    waited_since = T0 + timedelta(hours=2)
    later = make_request(
        old_apps,
        "BBBB-3333",
        "MARIA@ｅxample.com",
        minutes=30,
        status="waiting",
        waiting_since=waited_since,
    )
    other_dob = make_request(old_apps, "CCCC-4444", "Maria@Example.COM", minutes=40, date_of_birth=date(2012, 9, 1))
    verifier = old_apps.get_model("auth", "User").objects.create(username="nurse")
    resolved = make_request(
        old_apps,
        "DDDD-5555",
        "MARIA@EXAMPLE.COM",
        minutes=-600,
        status="resolved",
        is_open=False,
        outcome="reinvited",
        identity_verified_at=T0,
        identity_verified_by=verifier,
        ended_at=T0,
    )
    idn_earlier = make_request(old_apps, "EEEE-6666", "ana@xn--exmple-cua.com", minutes=5)
    idn_later = make_request(old_apps, "FFFF-7777", "Ana@EXÄMPLE.com", minutes=50)
    untouchable = make_request(old_apps, "GGGG-8888", "=?utf-8?q?maria?=@Example.com", minutes=60)
    Event = old_apps.get_model(APP, "RequestEvent")
    Outbound = old_apps.get_model(APP, "OutboundEmail")
    emails_before = Outbound.objects.count()

    new_apps = migrate(AFTER)

    ResetRequest = new_apps.get_model(APP, "ResetRequest")
    rows = {r.reference: r for r in ResetRequest.objects.all()}
    assert {ref: r.email for ref, r in rows.items()} == {
        first.reference: "maria@example.com",
        later.reference: "maria@example.com",
        other_dob.reference: "maria@example.com",
        resolved.reference: "maria@example.com",
        idn_earlier.reference: "ana@xn--exmple-cua.com",
        idn_later.reference: "ana@xn--exmple-cua.com",
        untouchable.reference: "=?utf-8?q?maria?=@Example.com",
    }
    # The earliest open request of each patient stays open; the later one is
    # closed as its duplicate.
    assert {ref for ref, r in rows.items() if r.is_open} == {
        first.reference,
        other_dob.reference,
        idn_earlier.reference,
        untouchable.reference,
    }
    closed = rows[later.reference]
    assert (closed.status, closed.close_reason) == ("closed", "duplicate")
    assert closed.ended_at is not None and closed.ended_at > T0
    assert closed.waiting_since is None
    assert closed.due_at == later.due_at + (closed.ended_at - waited_since)
    assert (rows[idn_later.reference].status, rows[idn_later.reference].close_reason) == ("closed", "duplicate")
    assert (rows[resolved.reference].status, rows[resolved.reference].outcome) == ("resolved", "reinvited")

    Event = new_apps.get_model(APP, "RequestEvent")
    events = list(Event.objects.order_by("pk").values_list("reset__reference", "kind", "from_status", "to_status"))
    assert events == [
        (later.reference, "status", "waiting", "closed"),
        (idn_later.reference, "status", "new", "closed"),
    ]
    closing = Event.objects.get(reset__reference=later.reference)
    assert closing.actor_id is None
    assert "address clean-up" in closing.message and first.reference in closing.message
    assert closing.created_at == closed.ended_at
    assert first.reference not in Event.objects.get(reset__reference=idn_later.reference).message
    assert idn_earlier.reference in Event.objects.get(reset__reference=idn_later.reference).message
    # No email is sent or queued.
    assert new_apps.get_model(APP, "OutboundEmail").objects.count() == emails_before


def test_it_canonicalises_held_submissions_and_the_outbox(old_apps):
    Held = old_apps.get_model(APP, "HeldSubmission")
    common = {
        "why": "honeypot",
        "received_at": T0,
        "first_name": "Maria",
        "last_name": "Lopez",
        "date_of_birth": DOB,
        "phone": "+15552013344",
        "appointment_date": date(2026, 11, 10),
        "reason": "other",
    }
    held = Held.objects.create(reference="JJJJ-2222", email="Maria@ＥＸＡＭＰＬＥ.com", **common)
    held_odd = Held.objects.create(reference="KKKK-3333", email='"maria"@example.com', **common)
    request = make_request(old_apps, "HHHH-9999", "maria@example.com", minutes=0)
    Outbound = old_apps.get_model(APP, "OutboundEmail")
    to_patient = Outbound.objects.create(reset=request, kind="acknowledgment", to="MARIA@exämple.com", created_at=T0)
    to_staff = Outbound.objects.create(kind="staff_new_request", to="Front.Desk@Example.org", created_at=T0)
    odd = Outbound.objects.create(reset=request, kind="acknowledgment", to="maría@example.com", created_at=T0)

    new_apps = migrate(AFTER)

    Held = new_apps.get_model(APP, "HeldSubmission")
    assert Held.objects.get(pk=held.pk).email == "maria@example.com"
    assert Held.objects.get(pk=held_odd.pk).email == '"maria"@example.com'
    Outbound = new_apps.get_model(APP, "OutboundEmail")
    assert Outbound.objects.get(pk=to_patient.pk).to == "maria@xn--exmple-cua.com"
    assert Outbound.objects.get(pk=to_staff.pk).to == "front.desk@example.org"
    assert Outbound.objects.get(pk=odd.pk).to == "maría@example.com"
    assert Outbound.objects.get(pk=to_patient.pk).state == "pending"
