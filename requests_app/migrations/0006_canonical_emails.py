"""Existing rows' email addresses in the one canonical form the form now
stores (requests_app/email_addresses.py: lower case, the domain as ASCII).

Before the form canonicalised addresses, one patient could have two open
requests under two spellings (``maria@ｅxample.com``, ``maria@example.com``)
that the mail layer delivered to one inbox. Once both read the same, the
partial unique index resetrequest_one_open_per_patient (email, date of birth,
while open) would refuse the update, so the later of such open requests is
closed as a duplicate of the earliest first, with a status event on its
timeline saying so. No email is sent. An address that cannot be put in
canonical form (one the form now refuses) is left as it is.

Not reversible in the data (the old spellings are not kept); migrating back
leaves the canonical addresses.
"""

from django.db import migrations
from django.utils import timezone

OPEN_STATUSES = ("new", "in_progress", "waiting")


def _canonical_or_none(address):
    from django.core.exceptions import ValidationError

    from requests_app.email_addresses import canonical_email

    try:
        return canonical_email(address)
    except ValidationError:
        return None


def _changed_spellings(queryset, field):
    """{address as stored: its canonical form} for each that changes."""
    changes = {}
    for address in queryset.values_list(field, flat=True).distinct().iterator():
        canonical = _canonical_or_none(address)
        if canonical is not None and canonical != address:
            changes[address] = canonical
    return changes


def _close_collapsing_duplicates(ResetRequest, RequestEvent, changes, now):
    """Close every open request but the earliest of each patient (canonical
    email and date of birth) that the new spellings make one."""
    patients = {}
    open_requests = (
        ResetRequest.objects.filter(is_open=True, date_of_birth__isnull=False)
        .order_by("submitted_at", "pk")
        .values_list("pk", "email", "date_of_birth")
    )
    for pk, email, date_of_birth in open_requests.iterator():
        patients.setdefault((changes.get(email, email), date_of_birth), []).append(pk)
    for pks in patients.values():
        if len(pks) < 2:
            continue
        kept = ResetRequest.objects.get(pk=pks[0])
        for pk in pks[1:]:
            duplicate = ResetRequest.objects.get(pk=pk)
            closing = {
                "status": "closed",
                "is_open": False,
                "close_reason": "duplicate",
                "ended_at": now,
                "updated_at": now,
            }
            if duplicate.status == "waiting" and duplicate.waiting_since is not None:
                # As a close from waiting does: the due clock stopped meanwhile.
                closing["due_at"] = duplicate.due_at + (now - duplicate.waiting_since)
                closing["waiting_since"] = None
            ResetRequest.objects.filter(pk=pk, status=duplicate.status).update(**closing)
            RequestEvent.objects.create(
                reset_id=pk,
                kind="status",
                actor=None,
                from_status=duplicate.status,
                to_status="closed",
                message=(
                    f"Closed by the email address clean-up as a duplicate of {kept.reference}: "
                    "both addresses are one inbox written two ways. No email was sent."
                ),
                created_at=now,
            )


def canonicalise_emails(apps, schema_editor):
    ResetRequest = apps.get_model("requests_app", "ResetRequest")
    RequestEvent = apps.get_model("requests_app", "RequestEvent")
    HeldSubmission = apps.get_model("requests_app", "HeldSubmission")
    OutboundEmail = apps.get_model("requests_app", "OutboundEmail")
    now = timezone.now()

    changes = _changed_spellings(ResetRequest.objects.all(), "email")
    if changes:
        _close_collapsing_duplicates(ResetRequest, RequestEvent, changes, now)
        for address, canonical in changes.items():
            ResetRequest.objects.filter(email=address).update(email=canonical)
    for address, canonical in _changed_spellings(HeldSubmission.objects.all(), "email").items():
        HeldSubmission.objects.filter(email=address).update(email=canonical)
    for address, canonical in _changed_spellings(OutboundEmail.objects.all(), "to").items():
        OutboundEmail.objects.filter(to=address).update(to=canonical)


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0005_held_submissions_and_export_records"),
    ]

    operations = [
        migrations.RunPython(canonicalise_emails, migrations.RunPython.noop, elidable=False),
    ]
