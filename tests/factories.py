from __future__ import annotations

from datetime import date, timedelta

import factory
from django.conf import settings
from django.utils import timezone

from requests_app.models import OutboundEmail, PatientMessage, ResetRequest
from requests_app.references import new_reference

STAFF_PASSWORD = "correct horse battery staple"


class StaffUserFactory(factory.django.DjangoModelFactory):
    """A staff member who can sign in to the admin with ``STAFF_PASSWORD``,
    in no group (add one for permissions). ``superuser=True`` for a
    superuser; ``is_staff=False`` for a user who is not staff yet."""

    class Meta:
        model = settings.AUTH_USER_MODEL
        skip_postgeneration_save = True

    class Params:
        superuser = factory.Trait(is_superuser=True)

    username = factory.Sequence(lambda n: f"staff-{n}")
    password = factory.django.Password(STAFF_PASSWORD)
    is_staff = True


class ResetRequestFactory(factory.django.DjangoModelFactory):
    """A new request as the service would store it (no timeline events).

    Traits give the other statuses with the fields the database constraints
    ask of them: ``ResetRequestFactory(resolved=True)``.
    """

    class Meta:
        model = ResetRequest

    class Params:
        in_progress = factory.Trait(status=ResetRequest.Status.IN_PROGRESS)
        waiting = factory.Trait(
            status=ResetRequest.Status.WAITING,
            waiting_since=factory.LazyFunction(timezone.now),
        )
        identity_checked = factory.Trait(
            identity_dob_matched=True,
            identity_phone_matched=True,
            identity_verified_at=factory.LazyFunction(timezone.now),
        )
        resolved = factory.Trait(
            status=ResetRequest.Status.RESOLVED,
            is_open=False,
            outcome=ResetRequest.Outcome.REINVITED,
            identity_dob_matched=True,
            identity_phone_matched=True,
            identity_verified_at=factory.LazyFunction(timezone.now),
            ended_at=factory.LazyFunction(timezone.now),
        )
        closed = factory.Trait(
            status=ResetRequest.Status.CLOSED,
            is_open=False,
            close_reason=ResetRequest.CloseReason.WITHDRAWN,
            ended_at=factory.LazyFunction(timezone.now),
        )

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


class OutboundEmailFactory(factory.django.DjangoModelFactory):
    """A pending acknowledgment in the outbox, as ``email_queue`` writes it
    (without publishing it to the broker)."""

    class Meta:
        model = OutboundEmail

    reset = factory.SubFactory(ResetRequestFactory)
    kind = OutboundEmail.Kind.ACKNOWLEDGMENT
    to = factory.LazyAttribute(lambda o: o.reset.email if o.reset else settings.STAFF_NOTIFY_EMAIL)
    created_at = factory.LazyFunction(timezone.now)
    next_attempt_at = factory.LazyAttribute(lambda o: o.created_at)


def outbound_email_of_kind(kind: str, *, language: str) -> OutboundEmail:
    """An outbox row of ``kind`` as the worker loads it (with its request):
    for a patient writing in ``language`` whose first name has accents; a
    message to the patient with its text; the digest with no request."""
    reset = ResetRequestFactory(language=language, first_name="José María")
    patient_message = PatientMessage.objects.create(
        reset=reset, language=language, body="Hola, le llamamos mañana.", created_at=timezone.now()
    )
    outbound = OutboundEmailFactory(
        reset=None if kind == OutboundEmail.Kind.STAFF_OVERDUE_DIGEST else reset,
        kind=kind,
        patient_message=patient_message if kind == OutboundEmail.Kind.MESSAGE else None,
    )
    return OutboundEmail.objects.select_related("reset").get(pk=outbound.pk)
