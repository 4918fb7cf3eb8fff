"""Every CSV export of the request list is recorded (who, when, which filter,
how many rows) where an auditor can see it, and nobody can change or delete
the record."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import parse_qs

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from requests_app.models import ExportRecord

from .factories import ResetRequestFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

EXPORT = "/admin/requests_app/resetrequest/export.csv"
RECORDS = "/admin/requests_app/exportrecord/"


def data_rows(response: Any) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    return rows[1:]


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def record(staff: Any) -> ExportRecord:
    """One export by a staff member, as the export view records it."""
    return ExportRecord.objects.create(exported_by=staff, exported_at=timezone.now(), query="status__exact=new", rows=1)


def test_it_records_who_exported_when_with_which_filter_and_how_many_rows(staff_client, staff):
    ResetRequestFactory(waiting=True, first_name="Maria")
    ResetRequestFactory(waiting=True, last_name="Marian")
    ResetRequestFactory(waiting=True, first_name="Zed", last_name="Other")
    ResetRequestFactory(first_name="Maria")  # new, not waiting
    now = timezone.now()

    with time_machine.travel(now, tick=False):
        response = staff_client.get(EXPORT, {"status__exact": "waiting", "q": "Mari", "p": "3"})
    rows = data_rows(response)

    record = ExportRecord.objects.get()
    assert record.exported_by == staff
    assert record.exported_at == now
    # The filter and search the export used; the page number it ignores is not part of it.
    assert parse_qs(record.query) == {"status__exact": ["waiting"], "q": ["Mari"]}
    assert record.rows == len(rows) == 2


def test_it_records_an_export_of_the_whole_list(staff_client):
    ResetRequestFactory.create_batch(3)

    rows = data_rows(staff_client.get(EXPORT))

    record = ExportRecord.objects.get()
    assert (record.query, record.rows, len(rows)) == ("", 3, 3)


def test_it_records_the_export_before_the_first_row_leaves(staff_client, staff):
    """A download broken off half-way still left with someone's data."""
    ResetRequestFactory.create_batch(2)

    staff_client.get(EXPORT)  # the stream is never read

    record = ExportRecord.objects.get()
    assert (record.exported_by, record.rows) == (staff, 2)


def test_it_records_one_export_per_download_and_none_for_a_refused_one(staff_client):
    ResetRequestFactory()

    refused = staff_client.get(EXPORT, {"no_such_field": "1"})
    data_rows(staff_client.get(EXPORT))
    data_rows(staff_client.get(EXPORT, {"status__exact": "new"}))

    assert refused.status_code == 302
    assert sorted(ExportRecord.objects.values_list("query", flat=True)) == ["", "status__exact=new"]


def test_it_shows_the_records_to_a_superuser(record, superuser):
    response = client_for(superuser).get(RECORDS)

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [record]
    row = response.content.decode().split('id="result_list"', 1)[1]
    assert "Nora Nurse" in row
    assert "status__exact=new" in row
    assert ">1<" in row


def test_it_shows_the_records_to_an_auditor_with_the_view_permission_only(record):
    auditor = StaffUserFactory(username="manager")
    auditor.user_permissions.add(Permission.objects.get(codename="view_exportrecord"))
    auditor_client = client_for(auditor)

    assert auditor_client.get(RECORDS).status_code == 200
    assert auditor_client.get(f"{RECORDS}{record.pk}/change/").status_code == 200
    assert auditor_client.get(EXPORT).status_code == 403  # seeing the records is not exporting


def test_it_keeps_the_records_from_the_staff_group(record, staff_client):
    assert staff_client.get(RECORDS).status_code == 403
    assert staff_client.get(f"{RECORDS}{record.pk}/change/").status_code == 403
    assert b"exportrecord" not in staff_client.get("/admin/").content


def test_nobody_can_add_change_or_delete_a_record_not_even_a_superuser(record, superuser):
    boss = client_for(superuser)
    before = ExportRecord.objects.values().get()

    page = boss.get(f"{RECORDS}{record.pk}/change/")
    assert page.status_code == 200  # read-only
    assert b'name="_save"' not in page.content
    assert boss.get(f"{RECORDS}add/").status_code == 403
    assert boss.post(f"{RECORDS}{record.pk}/change/", {"rows": "0", "query": ""}).status_code == 403
    assert boss.post(f"{RECORDS}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    boss.post(RECORDS, {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"})

    assert ExportRecord.objects.values().get() == before
