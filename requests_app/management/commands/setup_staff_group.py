"""Create or update the least-privilege group staff work the queue with."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

GROUP_NAME = "Reset staff"

# Exactly what working the queue needs: read and move requests, read the
# family members and emails, add notes to the timeline, release or delete
# held submissions, read the message templates they send. No delete of
# anything else, nothing of django.contrib.auth (no user management), not
# the record of CSV exports (view_exportrecord): that is for an auditor, a
# practice manager given the permission by hand, not for the staff whose
# exports it records; and no editing of the message templates
# (change_messagetemplate): what patients are told is a practice manager's.
PERMISSIONS = (
    ("resetrequest", "view"),
    ("resetrequest", "change"),
    ("familymember", "view"),
    ("requestevent", "view"),
    ("requestevent", "add"),
    ("outboundemail", "view"),
    ("heldsubmission", "view"),
    ("heldsubmission", "change"),
    ("messagetemplate", "view"),
)


class Command(BaseCommand):
    help = (
        f"Create or update the '{GROUP_NAME}' group with exactly the permissions staff need "
        "(view and change requests, add notes, view emails; no delete, no user management). "
        "Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--user",
            action="append",
            default=[],
            metavar="USERNAME",
            help="Also put this existing user in the group and let them sign in to the admin (repeatable).",
        )

    @transaction.atomic
    def handle(self, *args: Any, user: list[str], **options: Any) -> None:
        wanted = {f"{action}_{model}" for model, action in PERMISSIONS}
        permissions = list(
            Permission.objects.filter(content_type__app_label="requests_app", codename__in=wanted).select_related(
                "content_type"
            )
        )
        missing = wanted - {permission.codename for permission in permissions}
        if missing:
            raise CommandError(f"Permissions missing ({', '.join(sorted(missing))}): run `manage.py migrate` first.")

        group, created = Group.objects.get_or_create(name=GROUP_NAME)
        group.permissions.set(permissions)
        self.stdout.write(
            f"{'Created' if created else 'Updated'} group '{GROUP_NAME}' with: {', '.join(sorted(wanted))}."
        )

        User = get_user_model()
        for username in user:
            try:
                member = User.objects.get(**{User.USERNAME_FIELD: username})
            except User.DoesNotExist as exc:
                raise CommandError(f"No user named {username!r}.") from exc
            if not member.is_staff:
                member.is_staff = True
                member.save(update_fields=["is_staff"])
            member.groups.add(group)
            self.stdout.write(f"{username} is in '{GROUP_NAME}'.")
