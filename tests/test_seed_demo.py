import pytest
from django.core.management import call_command

from requests_app.models import RequestEvent, ResetRequest

pytestmark = pytest.mark.django_db


def test_it_creates_the_requested_number_in_every_status():
    call_command("seed_demo", "--requests", "400", "--seed", "7", "--batch", "150")
    assert ResetRequest.objects.count() == 400
    assert set(ResetRequest.objects.values_list("status", flat=True)) == {
        "new",
        "in_progress",
        "waiting",
        "resolved",
        "closed",
    }
    assert RequestEvent.objects.filter(kind="submitted").count() == 400


def test_it_stores_rows_that_satisfy_every_constraint_and_can_be_worked():
    call_command("seed_demo", "--requests", "50", "--seed", "3")
    open_request = ResetRequest.objects.filter(status="new").first()
    assert open_request is not None
    assert open_request.is_open and open_request.ended_at is None
    assert not ResetRequest.objects.filter(status="resolved", identity_verified_at__isnull=True).exists()
