"""The staff login form when STAFF_MFA is on: password and TOTP code in one
form, failing as one.

django_otp's ``OTPAdminAuthenticationForm`` checks the password first and
then, on a right password, answers differently ("Invalid token", "Please
select a device", a throttling notice), puts the password back into the
re-rendered form and offers a choice of device: each of those tells whoever
typed it that the password was right. Its code failures also never reach
django-axes, so the lockout only counted wrong passwords.

Here every failure (unknown user, wrong password, an account that is not
staff, no device, no code, a wrong or throttled code) gets the same one
message and the same page, the password is never rendered back, and a
failure after a right password is reported through
``django.contrib.auth.signals.user_login_failed`` with the username, as
``authenticate()`` reports a wrong password, so django-axes counts it toward
the same lockout. Once locked, django-axes' backend refuses the password
itself, so a right password with a right code is refused too.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.models import Device


class StaffOTPAuthenticationForm(OTPAdminAuthenticationForm):
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        # Django's admin wording, with the code: for a wrong password and for
        # everything that can go wrong with the second factor alike.
        "invalid_login": (
            "Please enter the correct %(username)s, password and code for a staff account. "
            "Note that the %(username)s and password may be case-sensitive."
        ),
    }

    # Never rendered back into the page: django_otp turns render_value on.
    password = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}, render_value=False),
    )
    otp_token = forms.CharField(
        label="Code from your authenticator app",
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean(self) -> dict[str, Any]:
        # Django's check of the password (AdminAuthenticationForm.clean, past
        # django_otp's). A wrong password or an unknown user has already been
        # reported to django-axes by authenticate() when this raises with no
        # user; a right password for an account that may not use the admin
        # has not.
        try:
            self.cleaned_data = AdminAuthenticationForm.clean(self)
        except ValidationError:
            if self.user_cache is None:
                raise
            self._refuse()
        try:
            self.clean_otp(self.user_cache)
        except ValidationError:
            self._refuse()
        return self.cleaned_data

    def _refuse(self) -> NoReturn:
        """A right password and anything else wrong: counted as a failed
        login and answered as a wrong password."""
        user_login_failed.send(
            sender=__name__,
            # django-axes reads the username from here (AXES_USERNAME_FORM_FIELD).
            credentials={"username": self.cleaned_data.get("username")},
            request=self.request,
        )
        self.user_cache = None
        raise self.get_invalid_login_error() from None

    def _chosen_device(self, user: Any) -> Device | None:
        """The device posted, if it is the user's; otherwise the user's one
        confirmed device (``enroll_totp`` gives each staff member exactly
        one). The page offers no choice: the list would appear only after a
        right password."""
        device = super()._chosen_device(user)
        if device is None:
            devices = list(devices_for_user(user, confirmed=True, for_verify=True))
            if len(devices) == 1:
                device = devices[0]
        return device

    def _update_form(self, user: Any) -> None:
        # django_otp fills in the device list and turns on render_value for
        # the password here: both tell that the password was right.
        pass
