"""The retention purge erases personal data RETENTION_DAYS after a request
ended, and keeps the rows and the timeline skeleton for counts and audit."""

from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from requests_app import services
from requests_app.models import FamilyMember, OutboundEmail, RequestEvent, ResetRequest
from requests_app.services import Submission

pytestmark = pytest.mark.django_db


def submit_and_close(email: str = "ana@example.com") -> ResetRequest:
    request = services.reset_submit(
        submission=Submission(
            first_name="Ana",
            last_name="Pereira",
            date_of_birth=timezone.localdate() - timedelta(days=365 * 40),
            email=email,
            phone="+15552013344",
            appointment_date=timezone.localdate() - timedelta(days=4),
            reason="never_received",
            details="My husband uses the same email",
            family=(("Rui", "Pereira", timezone.localdate() - timedelta(days=365 * 42)),),
        )
    ).reset
    services.reset_add_note(reset_id=request.pk, actor=None, text="Called Ana, left voicemail")
    return services.reset_close(reset_id=request.pk, actor=None, reason="withdrawn")


def test_it_erases_personal_data_after_the_retention_period(settings):
    settings.RETENTION_DAYS = 30
    request = submit_and_close()
    events_before = request.events.count()
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        call_command("purge_expired")
    request.refresh_from_db()
    assert (request.first_name, request.last_name, request.email, request.phone, request.details) == ("",) * 5
    assert request.date_of_birth is None
    assert request.status_secret == ""
    assert request.personal_data_purged_at is not None
    assert not FamilyMember.objects.filter(reset=request).exists()
    assert not request.events.exclude(message="").exists()
    assert not OutboundEmail.objects.filter(reset=request).exclude(to="").exists()
    # The skeleton stays: the row, its status and every event, plus one for the purge.
    assert ResetRequest.objects.filter(status="closed").count() == 1
    assert request.events.count() == events_before + 1
    assert request.events.filter(kind=RequestEvent.Kind.PURGED).count() == 1


def test_it_keeps_requests_that_ended_within_the_retention_period(settings):
    settings.RETENTION_DAYS = 30
    request = submit_and_close()
    with time_machine.travel(timezone.now() + timedelta(days=29)):
        call_command("purge_expired")
    request.refresh_from_db()
    assert request.first_name == "Ana"
    assert request.personal_data_purged_at is None


def test_it_never_purges_an_open_request(settings):
    settings.RETENTION_DAYS = 30
    request = services.reset_submit(
        submission=Submission(
            first_name="Open",
            last_name="Case",
            date_of_birth=timezone.localdate() - timedelta(days=9000),
            email="open@example.com",
            phone="+15552013344",
            appointment_date=timezone.localdate() - timedelta(days=4),
            reason="other",
        )
    ).reset
    with time_machine.travel(timezone.now() + timedelta(days=400)):
        call_command("purge_expired")
    request.refresh_from_db()
    assert request.email == "open@example.com"


def test_it_makes_the_status_link_of_a_purged_request_answer_404(client, settings):
    settings.RETENTION_DAYS = 30
    request = submit_and_close()
    status_url = request.get_status_url()
    assert client.get(status_url).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        call_command("purge_expired")
        assert client.get(status_url).status_code == 404
