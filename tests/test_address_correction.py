"""Correcting a patient's email address after a call: on the request's page,
identity-checked (the check on record, or date of birth and phone ticked in
the same form), on the timeline, the status link renewed, the "email does
not work" mark cleared and the acknowledgment sent to the new address."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from requests_app import services
from requests_app.models import OutboundEmail, RequestEvent, ResetRequest
from requests_app.selectors import next_in_queue
from requests_app.services import resets_purge_expired

from .factories import OutboundEmailFactory, ResetRequestFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/requests_app/resetrequest/"
OLD = "maria.lopez@exmaple.com"
NEW = "maria.lopez@example.com"


@pytest.fixture(autouse=True)
def _smtp_in_memory(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def bounced(**fields: Any) -> ResetRequest:
    """A request whose acknowledgment bounced: marked, its email bounced."""
    reset = ResetRequestFactory(
        email=OLD, email_undeliverable=True, email_undeliverable_at=timezone.now() - timedelta(minutes=5), **fields
    )
    OutboundEmailFactory(
        reset=reset,
        state=OutboundEmail.State.BOUNCED,
        sent_at=timezone.now() - timedelta(minutes=6),
        provider_message_id="2706ee8a-737c-4285-b032-ccd317af53ed",
        last_error="Postmark: The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    )
    return reset


def correct_url(reset: ResetRequest) -> str:
    return f"{LIST}{reset.pk}/correct_email/"


def correct(staff_client: Any, reset: ResetRequest, capture: Any, **data: Any) -> Any:
    with capture(execute=True):
        return staff_client.post(correct_url(reset), {"expected_status": reset.status, **data})


def test_the_page_says_the_address_does_not_work_and_offers_the_correction(staff_client: Any) -> None:
    reset = bounced()

    page = staff_client.get(f"{LIST}{reset.pk}/change/").content.decode()

    assert "The email address does not work — call the patient" in page
    assert "did not arrive (Postmark: The server was unable to deliver your message" in page
    assert f'href="{correct_url(reset)}?expected_status=new"' in page


def test_it_corrects_the_address_with_the_identity_check_in_the_same_form(
    staff_client: Any, staff: Any, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reset = bounced()
    old_token = reset.status_token

    response = correct(staff_client, reset, django_capture_on_commit_callbacks, email=NEW, dob="on", phone="on")

    assert response.status_code == 302
    reset.refresh_from_db()
    assert reset.email == NEW
    assert not reset.email_undeliverable and reset.email_undeliverable_at is None
    assert reset.identity_verified_by == staff and reset.identity_dob_matched and reset.identity_phone_matched
    assert not reset.identity_email_matched
    assert reset.status == ResetRequest.Status.NEW
    events = list(RequestEvent.objects.filter(reset=reset).order_by("pk").values_list("kind", "actor", "message"))
    assert events[:2] == [
        (RequestEvent.Kind.IDENTITY, staff.pk, "Matched the chart: date of birth, phone"),
        (
            RequestEvent.Kind.EMAIL_CORRECTED,
            staff.pk,
            f"Email address corrected after a call: {OLD} → {NEW}. The status link is renewed (the old one no "
            "longer works). No longer marked as not working. Acknowledgment email queued to it.",
        ),
    ]
    [sent] = mail.outbox
    assert sent.to == [NEW]
    assert reset.get_status_url() in sent.body
    assert client.get(f"/status/{old_token}/").status_code == 404
    assert client.get(reset.get_status_url()).status_code == 200


def test_it_asks_for_the_identity_check_first(staff_client: Any, django_capture_on_commit_callbacks: Any) -> None:
    reset = bounced()
    page = staff_client.get(correct_url(reset)).content.decode()
    assert "Date of birth matches the chart" in page and "Phone matches the chart" in page

    response = correct(staff_client, reset, django_capture_on_commit_callbacks, email=NEW, dob="on")

    assert response.status_code == 200
    assert "the date of birth and at least one more identifier" in response.content.decode()
    reset.refresh_from_db()
    assert (reset.email, reset.email_undeliverable, reset.identity_verified_at) == (OLD, True, None)
    assert not RequestEvent.objects.filter(reset=reset).exists()
    assert mail.outbox == []


def test_with_the_identity_check_on_record_it_asks_for_the_address_only(
    staff_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reset = bounced(in_progress=True, identity_checked=True)
    page = staff_client.get(correct_url(reset)).content.decode()
    assert "Date of birth matches the chart" not in page

    correct(staff_client, reset, django_capture_on_commit_callbacks, email=NEW)

    reset.refresh_from_db()
    assert reset.email == NEW and not reset.email_undeliverable
    assert not RequestEvent.objects.filter(reset=reset, kind=RequestEvent.Kind.IDENTITY).exists()
    assert [m.to for m in mail.outbox] == [[NEW]]


def test_it_keeps_the_address_in_its_canonical_form(staff_client: Any, django_capture_on_commit_callbacks: Any) -> None:
    reset = bounced(identity_checked=True)

    correct(staff_client, reset, django_capture_on_commit_callbacks, email="  Maria.Lopez@EXAMPLE.com ")

    reset.refresh_from_db()
    assert reset.email == NEW


@pytest.mark.parametrize("typed", ["=?utf-8?q?maria?=@example.com", "Maria <maria@example.com>", "maria@", ""])
def test_it_refuses_an_address_the_form_would_refuse(
    typed: str, staff_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reset = bounced(identity_checked=True)

    response = correct(staff_client, reset, django_capture_on_commit_callbacks, email=typed)

    assert response.status_code == 200
    assert 'class="errorlist' in response.content.decode()
    reset.refresh_from_db()
    assert (reset.email, reset.email_undeliverable) == (OLD, True)
    assert mail.outbox == []


def test_it_refuses_an_address_of_the_same_patients_other_open_request(
    staff_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reset = bounced(identity_checked=True)
    other = ResetRequestFactory(email=NEW, date_of_birth=reset.date_of_birth)

    response = correct(staff_client, reset, django_capture_on_commit_callbacks, email=NEW)

    assert response.status_code == 200
    assert f"The same patient already has an open request with that address, {other.reference}" in (
        response.content.decode()
    )
    reset.refresh_from_db()
    assert reset.email == OLD


def test_it_corrects_an_ended_request_without_reopening_it(
    staff_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reset = bounced(resolved=True)

    correct(staff_client, reset, django_capture_on_commit_callbacks, email=NEW)

    reset.refresh_from_db()
    assert reset.status == ResetRequest.Status.RESOLVED and not reset.is_open
    assert reset.email == NEW and not reset.email_undeliverable
    assert list(reset.emails.filter(state=OutboundEmail.State.SENT).values_list("kind", "to")) == [
        (OutboundEmail.Kind.RESOLVED, NEW)
    ]


def test_the_same_address_again_confirms_it_and_keeps_the_status_link(
    staff_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reset = bounced(identity_checked=True)
    secret = reset.status_secret

    correct(staff_client, reset, django_capture_on_commit_callbacks, email=OLD)

    reset.refresh_from_db()
    assert (reset.email, reset.status_secret, reset.email_undeliverable) == (OLD, secret, False)
    assert RequestEvent.objects.get(reset=reset, kind=RequestEvent.Kind.EMAIL_CORRECTED).message.startswith(
        f"Email address confirmed after a call: {OLD}."
    )
    assert [m.to for m in mail.outbox] == [[OLD]]


def test_a_request_that_moved_meanwhile_is_not_changed(
    staff_client: Any, staff: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reset = bounced(identity_checked=True)
    services.reset_start(reset_id=reset.pk, actor=staff)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(correct_url(reset), {"expected_status": "new", "email": NEW}, follow=True)

    assert "was changed by someone else" in response.content.decode()
    reset.refresh_from_db()
    assert reset.email == OLD and reset.email_undeliverable


def test_an_erased_request_has_no_address_to_correct(staff_client: Any) -> None:
    reset = bounced(resolved=True)
    reset.ended_at = timezone.now() - timedelta(days=400)
    reset.save()
    resets_purge_expired()
    reset.refresh_from_db()

    response = staff_client.post(correct_url(reset), {"expected_status": "resolved", "email": NEW}, follow=True)

    assert "personal data was erased" in response.content.decode()
    reset.refresh_from_db()
    assert reset.email == ""


def test_the_retention_purge_erases_the_addresses_on_the_timeline_and_the_reason(
    staff_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reset = bounced(resolved=True)
    correct(staff_client, reset, django_capture_on_commit_callbacks, email=NEW)
    ResetRequest.objects.filter(pk=reset.pk).update(ended_at=timezone.now() - timedelta(days=400))

    resets_purge_expired()

    texts = RequestEvent.objects.filter(reset=reset).values_list("message", flat=True)
    assert not any(OLD in text or NEW in text for text in texts)
    assert set(reset.emails.values_list("to", "last_error")) == {("", "")}


def test_a_staff_member_who_may_only_view_cannot_correct(client: Any, staff_user: Any) -> None:
    from django.contrib.auth.models import Permission

    staff_user.user_permissions.add(Permission.objects.get(codename="view_resetrequest"))
    client.force_login(staff_user)
    reset = bounced(identity_checked=True)

    response = client.post(correct_url(reset), {"expected_status": "new", "email": NEW})

    assert response.status_code == 403
    assert "Correct the email address" not in client.get(f"{LIST}{reset.pk}/change/").content.decode()
    reset.refresh_from_db()
    assert reset.email == OLD


# --- The queue ------------------------------------------------------------------------------


def test_the_next_request_is_one_whose_email_does_not_work_first(staff: Any) -> None:
    now = timezone.now()
    done = ResetRequestFactory(submitted_at=now - timedelta(hours=9))
    ResetRequestFactory(submitted_at=now - timedelta(hours=8))
    marked = bounced(submitted_at=now - timedelta(hours=1))

    assert next_in_queue(user_id=staff.pk, after=done) == marked


def test_the_dashboard_counts_the_open_requests_whose_email_does_not_work(staff_client: Any, settings: Any) -> None:
    settings.EMAIL_PROVIDER = "postmark"
    bounced()
    bounced(waiting=True)
    bounced(closed=True)

    page = staff_client.get("/admin/").content.decode()

    tile = page[page.index("rr-tile-email_undeliverable") :].split("</li>")[0]
    assert '<span class="rr-tile-value">2</span>' in tile
    assert f'href="{LIST}?email_address=does_not_work&amp;state=open"' in tile


def test_with_plain_smtp_the_dashboard_has_no_such_tile(staff_client: Any, settings: Any) -> None:
    settings.EMAIL_PROVIDER = ""

    assert "rr-tile-email_undeliverable" not in staff_client.get("/admin/").content.decode()
