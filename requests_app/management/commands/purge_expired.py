from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from requests_app.services import resets_purge_expired


class Command(BaseCommand):
    help = "Erase the personal data of requests that ended more than RETENTION_DAYS ago (also run daily by beat)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = resets_purge_expired()
        days = settings.RETENTION_DAYS
        self.stdout.write(f"Erased the personal data of {count} requests that ended over {days} days ago.")
