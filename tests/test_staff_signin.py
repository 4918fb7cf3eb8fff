"""Staff sign-in: lockout after repeated failures, TOTP when STAFF_MFA is on,
idle sessions end, CSRF everywhere."""

import re
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


# --- A wrong second factor looks like a wrong password ------------------------------

CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')
ERROR_NOTE = re.compile(r'<p class="errornote">\s*(.*?)\s*</p>', re.DOTALL)


def code_for(device, drift: int = 0) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=drift):06d}"


def wrong_code(device) -> str:
    """A code of the right shape that the device refuses now (it accepts
    the step before and after too)."""
    accepted = {code_for(device, drift) for drift in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in accepted)


def login_page(response) -> str:
    """The login form as the browser gets it, less its CSRF token (new on every page)."""
    assert response.status_code == 200
    return CSRF_TOKEN.sub("", response.content.decode())


def error_notes(response) -> list[str]:
    return ERROR_NOTE.findall(response.content.decode())


@pytest.fixture
def mfa(settings):
    settings.STAFF_MFA = True


@pytest.fixture
def device(staff):
    return TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)


@pytest.mark.parametrize(
    "second_factor", ["wrong code", "wrong code for the chosen device", "no code", "no device enrolled"]
)
def test_it_answers_a_failed_second_factor_exactly_as_a_wrong_password(client, staff, mfa, second_factor):
    extra = {}
    if second_factor != "no device enrolled":
        device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
        extra["otp_token"] = "" if second_factor == "no code" else wrong_code(device)
        if second_factor == "wrong code for the chosen device":
            extra["otp_device"] = device.persistent_id
    else:
        extra["otp_token"] = "123456"

    wrong_password = log_in(client, "wrong password", **extra)
    right_password = log_in(client, **extra)

    assert len(error_notes(wrong_password)) == 1
    assert error_notes(right_password) == error_notes(wrong_password)
    assert login_page(right_password) == login_page(wrong_password)
    assert not reaches_admin_index(client)


def test_it_answers_an_unknown_user_as_a_wrong_password_when_mfa_is_on(client, staff, device, mfa):
    unknown = client.post(LOGIN, {"username": "ghost", "password": PASSWORD, "otp_token": wrong_code(device)})
    wrong_code_page = log_in(client, otp_token=wrong_code(device))

    assert len(error_notes(unknown)) == 1
    assert error_notes(unknown) == error_notes(wrong_code_page)
    assert "Please enter the correct username, password and code" in error_notes(unknown)[0]


def test_it_never_puts_the_password_back_into_the_form_when_mfa_is_on(client, staff, device, mfa):
    response = log_in(client, otp_device=device.persistent_id, otp_token=wrong_code(device))

    page = login_page(response)
    assert PASSWORD not in page
    assert re.search(r'<input type="password" name="password"(?![^>]*value=)[^>]*>', page)


def test_it_signs_in_with_password_and_code_without_a_choice_of_device(client, staff, device, mfa):
    """The page offers no device to choose (the choice would appear only
    after a right password): the code is checked against the staff member's
    device, the one enroll_totp gives them."""
    response = log_in(client, otp_token=code_for(device))

    assert response.status_code == 302
    assert reaches_admin_index(client)


def test_it_locks_the_account_on_the_fourth_wrong_code_even_for_the_right_password_and_code(
    client, staff, device, mfa, settings
):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert log_in(client, otp_token=wrong_code(device)).status_code == 200
        assert log_in(client, otp_token=wrong_code(device)).status_code == 429
        device.throttle_reset()  # django-otp's own slow-down is not what is checked here
        assert log_in(client, otp_token=code_for(device)).status_code == 429
        assert not reaches_admin_index(client)

        traveller.shift(timedelta(minutes=16))
        assert log_in(client, otp_token=code_for(device)).status_code == 302
        assert reaches_admin_index(client)


def test_it_adds_wrong_codes_and_wrong_passwords_up_toward_the_lockout(client, staff, device, mfa):
    assert log_in(client, "wrong password", otp_token=code_for(device)).status_code == 200
    assert log_in(client, otp_token="").status_code == 200
    assert log_in(client, "wrong password", otp_token=wrong_code(device)).status_code == 200
    assert log_in(client, otp_token=wrong_code(device)).status_code == 429
    device.throttle_reset()
    assert log_in(client, otp_token=code_for(device)).status_code == 429
