"""Held submissions for staff: their own list, released (filed as if just
submitted) or deleted as spam after a confirmation naming them, counted on
the dashboard and in the daily digest, deleted after HELD_RETENTION_DAYS."""

from datetime import date, timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from requests_app.models import HeldSubmission, OutboundEmail, RequestEvent, ResetRequest
from requests_app.tasks import purge_expired, queue_overdue_digest

from .conftest import valid_form_data
from .factories import ResetRequestFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/requests_app/heldsubmission/"


@pytest.fixture
def held(client, django_capture_on_commit_callbacks):
    """A real patient's form that came back without a timing value."""

    def _held(**overrides):
        with django_capture_on_commit_callbacks(execute=True):
            client.post("/reset/", valid_form_data(**overrides))
        return HeldSubmission.objects.latest("pk")

    return _held


@pytest.fixture(autouse=True)
def _timing_check_on(settings):
    settings.SUBMIT_MIN_SECONDS = 3


def act(staff_client, action, rows, django_capture_on_commit_callbacks, **extra):
    with django_capture_on_commit_callbacks(execute=True):
        return staff_client.post(LIST, {"action": action, "_selected_action": [row.pk for row in rows], **extra})


def test_it_lists_held_submissions_for_staff(staff_client, held):
    submission = held(first_name="Rosa")

    page = staff_client.get(LIST).content.decode()

    assert submission.reference in page
    assert "Rosa Lopez" in page
    assert "No valid timing value" in page


def test_it_files_a_released_submission_as_a_new_request_under_the_reference_it_showed(
    staff_client, staff, held, django_capture_on_commit_callbacks
):
    submission = held()
    mail.outbox.clear()

    response = act(staff_client, "release", [submission], django_capture_on_commit_callbacks)

    assert response.status_code == 302
    reset = ResetRequest.objects.get()
    assert reset.reference == submission.reference
    assert (reset.status, reset.email, reset.phone) == ("new", "maria.lopez@example.com", "+15552013344")
    released = reset.events.get(kind=RequestEvent.Kind.RELEASED)
    assert released.actor == staff
    assert "No valid timing value" in released.message
    assert reset.events.filter(kind=RequestEvent.Kind.SUBMITTED).exists()
    assert sorted(m.to[0] for m in mail.outbox) == ["maria.lopez@example.com", "staff@practice.example"]
    assert not HeldSubmission.objects.exists()


def test_it_attaches_a_released_submission_to_the_patients_open_request(
    staff_client, held, django_capture_on_commit_callbacks
):
    open_request = ResetRequestFactory(email="maria.lopez@example.com", date_of_birth=date(1980, 4, 23))
    submission = held()
    mail.outbox.clear()

    act(staff_client, "release", [submission], django_capture_on_commit_callbacks)

    assert ResetRequest.objects.get() == open_request
    assert open_request.events.filter(kind=RequestEvent.Kind.DUPLICATE).exists()
    assert open_request.events.filter(kind=RequestEvent.Kind.RELEASED).exists()
    assert [m.to for m in mail.outbox] == [["maria.lopez@example.com"]]


def test_it_asks_before_deleting_held_submissions_and_names_them(
    staff_client, held, django_capture_on_commit_callbacks
):
    first, second = held(first_name="Rosa"), held(first_name="Luis", email="luis@example.com")

    response = act(staff_client, "delete_as_spam", [first, second], django_capture_on_commit_callbacks)

    assert response.status_code == 200
    page = response.content.decode()
    assert first.reference in page and second.reference in page
    assert "Rosa Lopez" in page and "luis@example.com" in page
    assert HeldSubmission.objects.count() == 2


def test_it_deletes_held_submissions_once_confirmed(staff_client, held, django_capture_on_commit_callbacks):
    first, second, kept = held(), held(email="luis@example.com"), held(email="ana@example.com")

    act(staff_client, "delete_as_spam", [first, second], django_capture_on_commit_callbacks, confirmed="yes")

    assert list(HeldSubmission.objects.all()) == [kept]
    assert ResetRequest.objects.count() == 0
    assert OutboundEmail.objects.count() == 0


def test_it_lets_nobody_edit_a_held_submission(staff_client, held):
    submission = held()
    response = staff_client.post(f"{LIST}{submission.pk}/change/", {"first_name": "Changed"})
    submission.refresh_from_db()
    assert submission.first_name == "Maria"
    assert response.status_code in (302, 403)


def test_it_deletes_held_submissions_past_the_retention_period(held, settings):
    settings.HELD_RETENTION_DAYS = 7
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        old = held()
        traveller.shift(timedelta(days=6))
        recent = held(email="ana@example.com")
        traveller.shift(timedelta(days=1, minutes=1))
        purge_expired.delay().get()

    assert list(HeldSubmission.objects.all()) == [recent]
    assert not HeldSubmission.objects.filter(pk=old.pk).exists()


def test_it_counts_held_submissions_on_the_dashboard(staff_client, held):
    held()
    held(email="ana@example.com")

    page = staff_client.get("/admin/").content.decode()

    tile = page[page.index("rr-tile-held") :]
    assert f'href="{LIST}"' in tile[:400]
    assert ">2</span>" in tile[:400]


def test_it_tells_staff_about_held_submissions_in_the_daily_digest(held, django_capture_on_commit_callbacks):
    held()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert queue_overdue_digest.delay().get() is True

    (digest,) = mail.outbox
    assert digest.to == ["staff@practice.example"]
    assert "1 held" in digest.subject
    assert "1 submission is held" in digest.body
    assert f"http://testserver{LIST}" in digest.body or LIST in digest.body
    # Minimum necessary: no patient details in a staff email.
    assert "Lopez" not in digest.body and "maria.lopez" not in digest.body
