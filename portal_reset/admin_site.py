"""The staff admin site: Django's, with a TOTP second factor when STAFF_MFA is on.

It is the project's one admin site, where every app's models are registered
(``django.contrib.auth``'s as well as ours), so it lives with the project
rather than inside ``requests_app.admin``: resolving it must not import an
app's admin modules, which register themselves on the site being resolved.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest
from django_otp.admin import OTPAdminSite

from .staff_login import StaffOTPAuthenticationForm


class StaffAdminSite(OTPAdminSite):
    """With STAFF_MFA on, the login form asks for the code from the staff
    member's authenticator app, and only a session verified with it reaches
    any admin page; a password alone is treated as not logged in. Its login
    form fails as one: a wrong code looks like a wrong password and counts
    toward the lockout (staff_login.py)."""

    site_header = "Portal access resets"
    site_title = "Portal access resets"
    index_title = "Reset requests"

    @property
    def login_form(self) -> Any:
        return StaffOTPAuthenticationForm if settings.STAFF_MFA else AdminAuthenticationForm

    @property
    def login_template(self) -> Any:
        return "admin/staff_login.html" if settings.STAFF_MFA else None

    def has_permission(self, request: HttpRequest) -> bool:
        if settings.STAFF_MFA:
            return super().has_permission(request)
        return AdminSite.has_permission(self, request)
