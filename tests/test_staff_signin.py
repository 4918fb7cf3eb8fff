"""Staff sign-in: lockout after repeated failures, TOTP when STAFF_MFA is on,
idle sessions end, CSRF everywhere."""

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from .factories import StaffUserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff():
    return StaffUserFactory(username="nurse", password=PASSWORD)


def log_in(client, password=PASSWORD, **extra):
    return client.post(LOGIN, {"username": "nurse", "password": password, **extra})


def reaches_admin_index(client) -> bool:
    response = client.get("/admin/")
    return response.status_code == 200 and "Log out" in response.content.decode()


def test_it_signs_in_with_the_right_password(client, staff):
    assert log_in(client).status_code == 302
    assert reaches_admin_index(client)


def test_it_locks_the_account_on_the_fourth_wrong_password_even_for_the_right_one(client, staff):
    for _ in range(3):
        assert log_in(client, "wrong password").status_code == 200  # the form again, with an error
    assert log_in(client, "wrong password").status_code == 429
    assert log_in(client).status_code == 429
    assert not reaches_admin_index(client)


def test_it_locks_the_account_from_every_address(staff):
    for n in range(4):
        log_in(Client(REMOTE_ADDR=f"198.51.100.{n}"), "wrong password")
    assert log_in(Client(REMOTE_ADDR="203.0.113.50")).status_code == 429


def test_it_lets_the_right_password_in_again_after_the_cool_off(client, staff, settings):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        for _ in range(4):
            log_in(client, "wrong password")
        assert log_in(client).status_code == 429
        traveller.shift(timedelta(minutes=16))
        assert log_in(client).status_code == 302
        assert reaches_admin_index(client)


def test_it_does_not_let_a_password_alone_reach_the_admin_when_mfa_is_on(client, staff, settings):
    settings.STAFF_MFA = True
    TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    response = log_in(client)
    assert response.status_code == 200  # the form again: the code is missing
    assert not reaches_admin_index(client)
    client.force_login(staff)  # a session with a password but no second factor
    assert not reaches_admin_index(client)


def test_it_signs_in_with_password_and_code_when_mfa_is_on(client, staff, settings):
    settings.STAFF_MFA = True
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    response = log_in(client, otp_device=device.persistent_id, otp_token=code)
    assert response.status_code == 302
    assert reaches_admin_index(client)


def test_it_refuses_a_wrong_code_when_mfa_is_on(client, staff, settings):
    settings.STAFF_MFA = True
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    log_in(client, otp_device=device.persistent_id, otp_token="000000")
    assert not reaches_admin_index(client)


def test_it_ends_a_staff_session_after_the_idle_time(client, staff, settings):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        log_in(client)
        traveller.shift(timedelta(minutes=settings.STAFF_SESSION_IDLE_MINUTES - 5))
        assert reaches_admin_index(client)  # activity keeps the session alive
        traveller.shift(timedelta(minutes=settings.STAFF_SESSION_IDLE_MINUTES + 1))
        response = client.get("/admin/")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_it_refuses_a_patient_form_post_without_a_csrf_token(form_data):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/reset/", form_data())
    assert response.status_code == 403


def test_it_refuses_an_admin_login_without_a_csrf_token(staff):
    client = Client(enforce_csrf_checks=True)
    assert client.post(LOGIN, {"username": "nurse", "password": PASSWORD}).status_code == 403
    assert not reaches_admin_index(client)


def test_it_refuses_a_staff_action_without_a_csrf_token(staff, reset_request):
    client = Client(enforce_csrf_checks=True)
    client.force_login(StaffUserFactory(username="boss2", superuser=True))
    response = client.post(f"/admin/requests_app/resetrequest/{reset_request.pk}/start/", {"expected_status": "new"})
    assert response.status_code == 403
    reset_request.refresh_from_db()
    assert reset_request.status == "new"
