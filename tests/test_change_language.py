"""Staff change the language a patient's emails and status page are written
in: one of settings.LANGUAGES, on the timeline; open and ended requests
alike, not one whose personal data was erased."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail

from requests_app import services
from requests_app.exceptions import WorkflowError
from requests_app.models import RequestEvent, ResetRequest

from .factories import ResetRequestFactory
from .support.snapshots import snapshot
from .test_i18n import _compiled_catalogs  # noqa: F401  (the Spanish catalog, compiled as make does)

pytestmark = pytest.mark.django_db


def change(request: ResetRequest, actor: Any, language: Any) -> ResetRequest:
    return services.reset_change_language(reset_id=request.pk, actor=actor, language=language)


def test_it_changes_the_language_and_says_so_on_the_timeline(staff_user):
    request = ResetRequestFactory(language="en")

    changed = change(request, staff_user, "es")

    assert changed.language == "es"
    assert ResetRequest.objects.get(pk=request.pk).language == "es"
    event = RequestEvent.objects.get(reset=request, kind=RequestEvent.Kind.LANGUAGE)
    assert (event.actor, event.message) == (staff_user, "Language changed from English to Español")


def test_it_changes_it_back(staff_user):
    request = ResetRequestFactory(language="es")

    change(request, staff_user, "en")

    assert RequestEvent.objects.get(reset=request, kind="language").message == (
        "Language changed from Español to English"
    )


def test_it_records_nothing_when_the_language_is_the_same(staff_user):
    request = ResetRequestFactory(language="es")
    before = snapshot(request)

    assert change(request, staff_user, "es").language == "es"

    assert snapshot(request) == before


@pytest.mark.parametrize("language", ["fr", "", "ES", "es-mx", None])
def test_it_refuses_a_language_the_emails_are_not_written_in(staff_user, language):
    request = ResetRequestFactory()
    before = snapshot(request)

    with pytest.raises(WorkflowError) as refused:
        change(request, staff_user, language)

    assert str(refused.value) == "Choose one of the languages: English, Español."
    assert snapshot(request) == before


@pytest.mark.parametrize("traits", [{"in_progress": True}, {"waiting": True}, {"resolved": True}, {"closed": True}])
def test_it_changes_the_language_of_open_and_ended_requests(staff_user, traits):
    request = ResetRequestFactory(**traits)

    change(request, staff_user, "es")

    assert ResetRequest.objects.get(pk=request.pk).language == "es"


def test_it_refuses_a_request_whose_personal_data_was_erased(staff_user, time_machine, settings):
    settings.RETENTION_DAYS = 1
    time_machine.move_to(datetime(2026, 6, 15, 14, 0, tzinfo=UTC), tick=False)
    request = ResetRequestFactory(closed=True)
    time_machine.shift(timedelta(days=2))
    services.resets_purge_expired()
    before = snapshot(request)

    with pytest.raises(WorkflowError, match="personal data was erased"):
        change(request, staff_user, "es")

    assert snapshot(request) == before


def test_it_writes_the_patient_s_next_email_and_status_page_in_the_new_language(
    staff_user, client, django_capture_on_commit_callbacks
):
    request = ResetRequestFactory(language="en")

    change(request, staff_user, "es")
    with django_capture_on_commit_callbacks(execute=True):
        services.reset_resend_acknowledgment(reset_id=request.pk, actor=staff_user)

    [message] = mail.outbox
    assert message.extra_headers["Content-Language"] == "es"
    assert "recibimos su solicitud" in message.subject
    page = client.get(request.get_status_url(), HTTP_ACCEPT_LANGUAGE="en")
    assert page["Content-Language"] == "es"
