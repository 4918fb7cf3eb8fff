"""The staff pages' own middleware (sessions, authentication, the second
factor, messages), each wrapped so that it runs for the admin only: a
patient's page has no login, no session and no message, and paid for all
four on every request. settings.MIDDLEWARE names these in place of the
originals, in the same order. django-axes' middleware stays as it is: it
only looks at an attribute its login backend sets, and its system check
asks for it by name.

CSRF works without a session (its secret is in a cookie: CSRF_USE_SESSIONS
is off), and the language switch is a cookie too. Kept apart from
portal_reset/middleware.py, which the logging configuration imports before
Django's apps are loaded.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django_otp.middleware import OTPMiddleware


@functools.cache
def _staff_prefix() -> str:
    return reverse("admin:index")


@receiver(setting_changed)
def _forget_staff_prefix(*, setting: str, **kwargs: Any) -> None:
    if setting == "ROOT_URLCONF":
        _staff_prefix.cache_clear()


def is_staff_path(request: HttpRequest) -> bool:
    """Whether ``request`` is for the staff pages (the admin, its login
    included): the pages that have users, sessions and messages."""
    return request.path.startswith(_staff_prefix())


def _staff_pages_only(middleware: type, doc: str) -> type:
    """``middleware``, run for the staff pages only: on any other page the
    request goes straight on. Sync only, as the app is served (WSGI). None
    of the wrapped ones has a process_view, process_exception or
    process_template_response hook, which Django would call regardless."""
    for hook in ("process_view", "process_exception", "process_template_response"):
        if hasattr(middleware, hook):
            raise TypeError(f"{middleware.__name__} has {hook}, which would still run for every page")

    def __call__(self: Any, request: HttpRequest) -> HttpResponse:
        if not is_staff_path(request):
            return self.get_response(request)
        return middleware.__call__(self, request)

    name = "Staff" + middleware.__name__
    return type(
        name,
        (middleware,),
        {
            "__call__": __call__,
            "__doc__": doc,
            "__module__": __name__,
            "__qualname__": name,
            "sync_capable": True,
            "async_capable": False,
        },
    )


StaffSessionMiddleware = _staff_pages_only(SessionMiddleware, "Django's sessions, for the staff pages only.")
StaffAuthenticationMiddleware = _staff_pages_only(
    AuthenticationMiddleware, "request.user, for the staff pages only (a patient's page has none)."
)
StaffOTPMiddleware = _staff_pages_only(OTPMiddleware, "django-otp's verified user, for the staff pages only.")
StaffMessageMiddleware = _staff_pages_only(MessageMiddleware, "Django's messages, for the staff pages only.")
