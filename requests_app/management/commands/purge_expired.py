from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from requests_app.services import held_purge_expired, resets_purge_expired


class Command(BaseCommand):
    help = (
        "Erase the personal data of requests that ended more than RETENTION_DAYS ago, and delete held "
        "submissions older than HELD_RETENTION_DAYS (also run daily by beat)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = resets_purge_expired()
        held = held_purge_expired()
        self.stdout.write(
            f"Erased the personal data of {count} requests that ended over {settings.RETENTION_DAYS} days ago; "
            f"deleted {held} held submissions older than {settings.HELD_RETENTION_DAYS} days."
        )
