from __future__ import annotations

from datetime import date, timedelta

import factory
from django.conf import settings
from django.utils import timezone

from requests_app.models import ResetRequest, new_reference


class ResetRequestFactory(factory.django.DjangoModelFactory):
    """A new request as the service would store it (no timeline events)."""

    class Meta:
        model = ResetRequest

    reference = factory.LazyFunction(new_reference)
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    date_of_birth = factory.Faker("date_of_birth", minimum_age=1, maximum_age=95)
    email = factory.Sequence(lambda n: f"patient{n}@example.com")
    phone = "+15552013344"
    appointment_date = factory.LazyFunction(lambda: date.today() - timedelta(days=5))
    reason = ResetRequest.Reason.LINK_EXPIRED
    submitted_at = factory.LazyFunction(timezone.now)
    due_at = factory.LazyAttribute(lambda o: o.submitted_at + timedelta(hours=settings.RESET_SLA_HOURS))
