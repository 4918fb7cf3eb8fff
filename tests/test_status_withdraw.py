"""The status page as the patient reaches it from their email: in the
language the request was filed in whatever the browser asks, with times
HTML accepts, and, while the request is open, "I can get in now": a
confirmation page under the status link, then a POST (CSRF-checked) that
closes the request as withdrawn, with its timeline event and the closure
email. An ended request offers nothing and changes nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.core import mail
from django.test import Client

from requests_app import services
from requests_app.exceptions import ConcurrentChange, TransitionNotAllowed
from requests_app.models import OutboundEmail, RequestEvent, ResetRequest
from requests_app.services.workflow import WITHDRAWN_BY_PATIENT, reset_withdraw

from .factories import ResetRequestFactory

pytestmark = pytest.mark.django_db

SPANISH_BROWSER = {"HTTP_ACCEPT_LANGUAGE": "es"}
ENGLISH_BROWSER = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}
OPEN = [{}, {"in_progress": True}, {"waiting": True}]
ENDED = [{"resolved": True}, {"closed": True}, {"closed": True, "close_reason": "unverified"}]
BUTTON = "I can get in now"


def withdraw_url(request: ResetRequest) -> str:
    return request.get_status_url() + "withdraw/"


def html_lang(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', html)
    assert match
    return match.group(1)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match
    return match.group(1)


# --- In the request's language ---------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "browser", "phrase"),
    [
        ("es", ENGLISH_BROWSER, "Su solicitud de acceso al portal"),
        ("en", SPANISH_BROWSER, "Your portal access request"),
    ],
)
def test_it_shows_the_status_page_in_the_request_s_language_whatever_the_browser_asks(
    client, language, browser, phrase
):
    request = ResetRequestFactory(language=language)

    response = client.get(request.get_status_url(), **browser)

    assert response.status_code == 200
    html = response.content.decode()
    assert phrase in html
    assert html_lang(html) == language
    assert response["Content-Language"] == language


def test_it_keeps_the_request_s_language_over_a_language_cookie(client, settings):
    request = ResetRequestFactory(language="es")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"

    response = client.get(request.get_status_url(), **ENGLISH_BROWSER)

    assert html_lang(response.content.decode()) == "es"
    assert response["Content-Language"] == "es"


def test_it_leaves_other_pages_in_the_browser_s_language(client):
    ResetRequestFactory(language="es")

    response = client.get("/reset/submitted/K7QM-3XTD/", **ENGLISH_BROWSER)

    assert html_lang(response.content.decode()) == "en"
    assert response["Content-Language"] == "en"


# --- Times HTML accepts ------------------------------------------------------------------

# HTML's "valid global date and time string": at most three fractional digits.
GLOBAL_DATE_AND_TIME = re.compile(r"\d{4,}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d{1,3})?)?(?:Z|[+-]\d\d:?\d\d)")


def test_it_writes_each_time_as_html_s_global_date_and_time_in_utc_to_the_second(client):
    request = ResetRequestFactory(closed=True)
    ResetRequest.objects.filter(pk=request.pk).update(
        submitted_at=datetime(2026, 3, 14, 13, 30, 5, 123456, tzinfo=UTC),
        updated_at=datetime(2026, 3, 15, 9, 0, 59, 999999, tzinfo=UTC),
        ended_at=datetime(2026, 3, 15, 9, 0, 59, 999999, tzinfo=UTC),
    )

    html = client.get(request.get_status_url()).content.decode()

    values = re.findall(r'<time datetime="([^"]*)"', html)
    assert values == ["2026-03-14T13:30:05Z", "2026-03-15T09:00:59Z", "2026-03-15T09:00:59Z"]
    assert all(GLOBAL_DATE_AND_TIME.fullmatch(value) for value in values)
    # What people read stays on the practice's clock (New York, UTC-4 then).
    assert "March 14, 2026, 9:30 AM" in html


# --- The button ------------------------------------------------------------------------------


@pytest.mark.parametrize("traits", OPEN)
def test_it_offers_i_can_get_in_now_while_the_request_is_open(client, traits):
    request = ResetRequestFactory(**traits)

    html = client.get(request.get_status_url()).content.decode()

    assert BUTTON in html
    # Relative: the secret token is not written into the page again.
    assert 'href="withdraw/"' in html
    assert request.status_secret not in html


@pytest.mark.parametrize("traits", ENDED)
def test_it_offers_nothing_once_the_request_has_ended(client, traits):
    request = ResetRequestFactory(**traits)

    html = client.get(request.get_status_url()).content.decode()

    assert BUTTON not in html
    assert "withdraw/" not in html


# --- The confirmation page ---------------------------------------------------------------------


@pytest.mark.parametrize("traits", OPEN)
def test_it_asks_for_a_confirmation_first_changing_nothing(client, traits):
    request = ResetRequestFactory(**traits, first_name="Zebulon", last_name="Quattlebaum", phone="+15559871234")
    before = request.status

    response = client.get(withdraw_url(request))

    assert response.status_code == 200
    html = response.content.decode()
    assert request.reference in html
    assert 'method="post"' in html
    assert csrf_token(html)
    assert 'href="../"' in html  # keep it open: back to the status page
    for personal in ("Zebulon", "Quattlebaum", "9871234", request.status_secret):
        assert personal not in html
    assert "no-store" in response["Cache-Control"]
    request.refresh_from_db()
    assert request.status == before
    assert request.is_open
    assert not RequestEvent.objects.filter(reset=request).exists()


def test_it_asks_in_the_request_s_language(client):
    request = ResetRequestFactory(language="es")

    response = client.get(withdraw_url(request), **ENGLISH_BROWSER)

    assert html_lang(response.content.decode()) == "es"
    assert response["Content-Language"] == "es"


def test_it_answers_head_on_the_confirmation_page(client):
    assert client.head(withdraw_url(ResetRequestFactory())).status_code == 200


def test_it_keeps_the_referer_for_its_own_post(client):
    """No ``no-referrer`` here: under it a browser posts the form with
    ``Origin: null``, which Django's CSRF check refuses."""
    response = client.get(withdraw_url(ResetRequestFactory()))

    assert response.status_code == 200
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("traits", ENDED)
def test_it_sends_an_ended_request_s_confirmation_back_to_the_status_page(client, traits):
    request = ResetRequestFactory(**traits)

    response = client.get(withdraw_url(request))

    assert response.status_code == 303
    assert response["Location"] == request.get_status_url()


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_answers_404_for_a_wrong_token(client, method):
    request = ResetRequestFactory()
    token = request.status_token
    wrong = [token[:-1], token[:-1] + ("B" if token[-1] != "B" else "C"), request.reference.replace("-", ""), "x"]

    for bad in wrong:
        assert getattr(client, method)(f"/status/{bad}/withdraw/").status_code == 404, bad

    request.refresh_from_db()
    assert request.is_open


def test_it_answers_404_once_the_request_s_data_was_purged(client):
    request = ResetRequestFactory()
    url = withdraw_url(request)
    ResetRequest.objects.filter(pk=request.pk).update(status_secret="")

    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404


# --- The POST ------------------------------------------------------------------------------------


@pytest.mark.parametrize("traits", OPEN)
def test_it_closes_the_request_as_withdrawn_with_its_event_and_the_closure_email(
    client, traits, django_capture_on_commit_callbacks
):
    request = ResetRequestFactory(**traits, email="zq.private@example.com")
    before = request.status

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(withdraw_url(request))

    assert response.status_code == 303
    assert response["Location"] == request.get_status_url()
    request.refresh_from_db()
    assert (request.status, request.close_reason, request.is_open) == ("closed", "withdrawn", False)
    assert request.ended_at is not None
    [event] = RequestEvent.objects.filter(reset=request, kind=RequestEvent.Kind.STATUS)
    assert (event.from_status, event.to_status, event.actor) == (before, "closed", None)
    assert event.message == WITHDRAWN_BY_PATIENT
    [outbound] = OutboundEmail.objects.filter(reset=request)
    assert (outbound.kind, outbound.to) == ("closed", "zq.private@example.com")
    [message] = mail.outbox
    assert message.to == ["zq.private@example.com"]
    assert "as you asked" in message.body
    # Back on the status page: closed, and nothing more to offer.
    page = client.get(response["Location"])
    assert page.context["step"] == "closed"
    assert BUTTON not in page.content.decode()


@pytest.mark.parametrize("traits", ENDED)
def test_it_changes_nothing_on_an_ended_request(client, traits, django_capture_on_commit_callbacks):
    request = ResetRequestFactory(**traits)
    before = ResetRequest.objects.values().get(pk=request.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(withdraw_url(request))

    assert response.status_code == 303
    assert response["Location"] == request.get_status_url()
    assert ResetRequest.objects.values().get(pk=request.pk) == before
    assert not RequestEvent.objects.filter(reset=request).exists()
    assert not OutboundEmail.objects.exists()
    assert mail.outbox == []


def test_it_is_safe_to_submit_twice(client, django_capture_on_commit_callbacks):
    request = ResetRequestFactory()

    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(withdraw_url(request))
        second = client.post(withdraw_url(request))

    assert first.status_code == second.status_code == 303
    assert RequestEvent.objects.filter(reset=request, kind=RequestEvent.Kind.STATUS).count() == 1
    assert OutboundEmail.objects.filter(reset=request, kind="closed").count() == 1
    assert len(mail.outbox) == 1


def test_it_goes_back_to_the_status_page_when_staff_moved_the_request_at_the_same_moment(client):
    request = ResetRequestFactory()

    with mock.patch("requests_app.views.status.reset_withdraw", side_effect=ConcurrentChange("moved")):
        response = client.post(withdraw_url(request))

    assert response.status_code == 303
    assert response["Location"] == request.get_status_url()


def test_it_refuses_a_post_without_the_csrf_token(django_capture_on_commit_callbacks):
    request = ResetRequestFactory()
    client = Client(enforce_csrf_checks=True)

    response = client.post(withdraw_url(request))

    assert response.status_code == 403
    request.refresh_from_db()
    assert request.is_open


def test_it_takes_the_post_a_browser_sends_from_the_confirmation_page(django_capture_on_commit_callbacks):
    request = ResetRequestFactory()
    client = Client(enforce_csrf_checks=True)
    page = client.get(withdraw_url(request), secure=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            withdraw_url(request),
            {"csrfmiddlewaretoken": csrf_token(page.content.decode())},
            secure=True,
            HTTP_ORIGIN="https://testserver",
        )

    assert response.status_code == 303
    request.refresh_from_db()
    assert request.close_reason == "withdrawn"


def test_it_would_refuse_the_post_of_a_page_sent_with_no_referrer(django_capture_on_commit_callbacks):
    """Why the confirmation page keeps ``same-origin``: the Origin a browser
    sends from a ``no-referrer`` page is ``null``."""
    request = ResetRequestFactory()
    client = Client(enforce_csrf_checks=True)
    page = client.get(withdraw_url(request), secure=True)

    response = client.post(
        withdraw_url(request),
        {"csrfmiddlewaretoken": csrf_token(page.content.decode())},
        secure=True,
        HTTP_ORIGIN="null",
    )

    assert response.status_code == 403


def test_it_does_not_withdraw_on_a_get(client):
    request = ResetRequestFactory()

    client.get(withdraw_url(request))
    client.head(withdraw_url(request))

    request.refresh_from_db()
    assert request.is_open


# --- The service -------------------------------------------------------------------------------


def test_the_service_refuses_an_ended_request_leaving_it_as_it_is(staff_user):
    request = ResetRequestFactory(in_progress=True, identity_checked=True)
    services.reset_resolve(reset_id=request.pk, actor=staff_user, outcome="reinvited")

    with pytest.raises(TransitionNotAllowed):
        reset_withdraw(reset_id=request.pk)

    request.refresh_from_db()
    assert (request.status, request.close_reason) == ("resolved", "")
