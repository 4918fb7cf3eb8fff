"""Create (once) the local run's staff superuser and print how to sign in."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

USERNAME = "admin"


class Command(BaseCommand):
    help = "For the local run: create the 'admin' superuser with a random password kept under var/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="The address printed for the web server.")

    def handle(self, *args: Any, url: str, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("ensure_local_admin is for the local run (DEBUG=1); use createsuperuser in production.")
        password_file = settings.VAR_DIR / "admin_password.txt"
        User = get_user_model()
        if not User.objects.filter(username=USERNAME).exists() or not password_file.exists():
            password = secrets.token_urlsafe(12)
            user, _ = User.objects.get_or_create(username=USERNAME, defaults={"email": "admin@practice.example"})
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        lines = [
            f"portal-reset is starting at {url}",
            f"Staff admin: {url}admin/  user: {USERNAME}  password: {password}",
        ]
        if not settings.EMAIL_HOST:
            lines.append(f"Emails are written to {settings.EMAIL_FILE_PATH}/")
        self.stdout.write(self.style.SUCCESS("\n" + "\n".join(f"  {line}" for line in lines) + "\n"))
