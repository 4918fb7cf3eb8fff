"""Give a staff member a TOTP device for the admin's second factor."""

from __future__ import annotations

import io
from typing import Any

import segno
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = (
        "Create a TOTP device for a staff user and print the otpauth:// link and a QR code to scan "
        "with an authenticator app. Replaces the user's existing TOTP devices."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="Authenticator app", help="A label for the device.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(username=username)
        except User.DoesNotExist as exc:
            raise CommandError(f"There is no user {username!r}.") from exc
        if not user.is_staff:
            raise CommandError(f"{username!r} is not a staff member.")
        TOTPDevice.objects.filter(user=user).delete()
        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
        url = device.config_url
        qr = io.StringIO()
        segno.make(url, error="m").terminal(out=qr, compact=True)
        self.stdout.write(qr.getvalue())
        self.stdout.write(f"Scan the code above, or enter this link in the app:\n{url}\n")
        self.stdout.write(self.style.WARNING("Show this only to the staff member; it is their second factor."))
