"""Fill the database with realistic demo requests in every status."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from requests_app.models import RequestEvent, ResetRequest
from requests_app.references import new_reference, new_status_secret

FIRST = "Maria Jose Ana Luis Carmen Juan Rosa Carlos Emma Liam Olivia Noah Ava Ethan Mia Lucas Sofia Mateo".split()
LAST = "Garcia Smith Lopez Johnson Martinez Brown Rodriguez Davis Hernandez Miller Wilson Moore Taylor Thomas".split()
# Roughly what a practice's queue looks like: most requests have ended.
STATUS_WEIGHTS = {"new": 4, "in_progress": 3, "waiting": 2, "resolved": 75, "closed": 16}


def _unused_references(count: int) -> list[str]:
    """``count`` random references that no stored request has: at a million
    rows, a few random ones collide (the space is about 5 x 10^11)."""
    references: set[str] = set()
    while len(references) < count:
        candidates = {new_reference() for _ in range(count - len(references))} - references
        taken = set(ResetRequest.objects.filter(reference__in=candidates).values_list("reference", flat=True))
        references |= candidates - taken
    return list(references)


class Command(BaseCommand):
    help = "Create N demo reset requests (fake patients) in every status, for trying the admin and for benchmarks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--requests", type=int, default=200, help="How many requests to create.")
        parser.add_argument("--batch", type=int, default=5000)
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for the same data every time.")

    def handle(self, *args: Any, requests: int, batch: int, seed: int | None, **options: Any) -> None:
        rng = random.Random(seed)
        staff = list(get_user_model().objects.filter(is_staff=True)[:5])
        now = timezone.now()
        statuses = list(STATUS_WEIGHTS)
        weights = list(STATUS_WEIGHTS.values())
        created = 0
        while created < requests:
            size = min(batch, requests - created)
            rows = []
            for i in range(size):
                n = created + i
                status = rng.choices(statuses, weights)[0]
                # Open requests are recent; ended ones spread over two years.
                age = timedelta(
                    hours=rng.uniform(1, 96) if status in ("new", "in_progress", "waiting") else rng.uniform(96, 17000)
                )
                submitted = now - age
                is_open = status in ("new", "in_progress", "waiting")
                verified = status == "resolved"
                rows.append(
                    ResetRequest(
                        reference="",  # set below, unique
                        status_secret=new_status_secret(),
                        status=status,
                        is_open=is_open,
                        reason=rng.choice(ResetRequest.Reason.values),
                        first_name=rng.choice(FIRST),
                        last_name=rng.choice(LAST),
                        # Demo patients' emails are unique so open ones never collide.
                        date_of_birth=date(1940, 1, 1) + timedelta(days=rng.randrange(0, 30000)),
                        email=f"demo.patient{n}.{rng.randrange(10**9)}@example.com",
                        phone=f"+1555{rng.randrange(10**7):07d}",
                        appointment_date=(submitted - timedelta(days=rng.randint(2, 10))).date(),
                        submitted_at=submitted,
                        due_at=submitted + timedelta(hours=settings.RESET_SLA_HOURS),
                        waiting_since=submitted + timedelta(hours=1) if status == "waiting" else None,
                        ended_at=None if is_open else submitted + timedelta(hours=rng.uniform(1, 72)),
                        assignee=rng.choice(staff) if staff and status != "new" else None,
                        identity_dob_matched=verified,
                        identity_phone_matched=verified,
                        identity_verified_at=submitted + timedelta(hours=1) if verified else None,
                        identity_verified_by=rng.choice(staff) if verified and staff else None,
                        outcome=rng.choice(ResetRequest.Outcome.values) if status == "resolved" else "",
                        close_reason=rng.choice(ResetRequest.CloseReason.values) if status == "closed" else "",
                    )
                )
            for row, reference in zip(rows, _unused_references(len(rows)), strict=True):
                row.reference = reference
            with transaction.atomic():
                saved = ResetRequest.objects.bulk_create(rows, batch_size=1000)
                RequestEvent.objects.bulk_create(
                    (
                        RequestEvent(
                            reset=r, kind=RequestEvent.Kind.SUBMITTED, to_status="new", created_at=r.submitted_at
                        )
                        for r in saved
                    ),
                    batch_size=1000,
                )
            created += size
            if requests > batch:
                self.stdout.write(f"  {created}/{requests}")
        self.stdout.write(self.style.SUCCESS(f"Created {created} demo requests."))
