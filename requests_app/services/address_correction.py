"""Correcting a patient's email address after a call: the front desk's
answer to "the email address does not work — call the patient"."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..email_addresses import canonical_email
from ..exceptions import ConcurrentChange, TransitionNotAllowed, WorkflowError
from ..models import CloseReason, OutboundEmail, RequestEvent, ResetRequest, Status
from ..outbox.queue import email_queue
from ..references import new_status_secret
from .workflow import _check_unchanged, _require_identity_match

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def email_sent_after_correction(reset: ResetRequest) -> str | None:
    """The email that goes to the corrected address: the acknowledgment
    (the reference and the new status link) while the request is open;
    once it ended, the email that ended it (none for spam)."""
    if reset.is_open:
        return OutboundEmail.Kind.ACKNOWLEDGMENT
    if reset.status == Status.RESOLVED:
        return OutboundEmail.Kind.RESOLVED
    if reset.close_reason != CloseReason.SPAM:
        return OutboundEmail.Kind.CLOSED
    return None


def reset_correct_email(
    *,
    reset_id: int,
    actor: User | None,
    email: str,
    dob: bool = False,
    phone: bool = False,
    expected_status: str | None = None,
) -> ResetRequest:
    """Put the address the patient gave on the phone on the request, open or
    ended (an ended one is not reopened). Atomic, with its timeline events.

    Only for a patient whose identity is checked: the check on record, or,
    without one, the date of birth and the phone matched the chart now
    (``dob``, ``phone``; the email cannot count, it is what is wrong),
    recorded in the same transaction. The address is kept in its canonical
    form (email_addresses.py). The status link is renewed (the wrong address
    received the old one, which stops working), the "email address does not
    work" mark is cleared, and the acknowledgment goes to the new address
    (email_sent_after_correction). The same address again confirms it: the
    mark is cleared and the email sent again, the link kept.

    Refused, naming it, while the same patient (new address, same date of
    birth) has another open request; ConcurrentChange if the request moved
    since the staff member's page showed ``expected_status``."""
    try:
        new = canonical_email(email)
    except ValidationError as exc:
        raise WorkflowError(" ".join(str(message) for message in exc.messages)) from None
    now = timezone.now()
    try:
        with transaction.atomic():
            reset = ResetRequest.objects.select_for_update().get(pk=reset_id)
            _check_unchanged(reset, expected_status)
            if reset.personal_data_purged_at is not None:
                raise TransitionNotAllowed(
                    f"{reset.reference}'s personal data was erased; there is no address to correct."
                )
            check_needed = reset.identity_verified_at is None
            if check_needed:
                _require_identity_match(dob=dob, phone=phone, email=False)
            old, was_marked = reset.email, reset.email_undeliverable
            changed = new != old
            if changed and reset.is_open:
                _check_no_other_open_request(reset, new)
            fields: dict[str, Any] = {
                "email": new,
                "email_undeliverable": False,
                "email_undeliverable_at": None,
                "updated_at": now,
            }
            if changed:
                fields["status_secret"] = new_status_secret()
            if check_needed:
                fields.update(
                    identity_dob_matched=True,
                    identity_phone_matched=True,
                    identity_email_matched=False,
                    identity_verified_by=actor,
                    identity_verified_at=now,
                )
            # The row is locked: the condition only says what the message
            # below was written from.
            claimed = ResetRequest.objects.filter(pk=reset_id, status=reset.status, email=old).update(**fields)
            if claimed != 1:
                raise ConcurrentChange(f"{reset.reference} was changed by someone else; nothing was saved.")
            reset.refresh_from_db()
            if check_needed:
                RequestEvent.objects.record(
                    reset,
                    RequestEvent.Kind.IDENTITY,
                    actor=actor,
                    message="Matched the chart: date of birth, phone",
                    at=now,
                )
            kind = email_sent_after_correction(reset)
            RequestEvent.objects.record(
                reset,
                RequestEvent.Kind.EMAIL_CORRECTED,
                actor=actor,
                message=_message(old, new, kind, was_marked=was_marked),
                at=now,
            )
            if kind is not None:
                email_queue(reset=reset, kind=kind, to=reset.email, actor=actor)
    except IntegrityError:
        # The patient filed a request with the new address meanwhile: the
        # one-open-request index refused; say which one.
        reset = ResetRequest.objects.get(pk=reset_id)
        _check_no_other_open_request(reset, new)
        raise
    logger.info("email address of %s %s", reset.reference, "corrected" if new != old else "confirmed")
    return reset


def _check_no_other_open_request(reset: ResetRequest, email: str) -> None:
    other = (
        ResetRequest.objects.filter(email=email, date_of_birth=reset.date_of_birth, is_open=True)
        .exclude(pk=reset.pk)
        .values_list("reference", flat=True)
        .first()
    )
    if other is not None:
        raise TransitionNotAllowed(
            f"The same patient already has an open request with that address, {other}: "
            f"work that one, and close {reset.reference} as a duplicate."
        )


def _message(old: str, new: str, kind: str | None, *, was_marked: bool) -> str:
    """The correction's timeline line (staff only; the retention purge
    erases it with the other texts)."""
    parts = [
        f"Email address confirmed after a call: {new}."
        if old == new
        else f"Email address corrected after a call: {old} → {new}."
    ]
    if old != new:
        parts.append("The status link is renewed (the old one no longer works).")
    if was_marked:
        parts.append("No longer marked as not working.")
    if kind:
        parts.append(f"{OutboundEmail.Kind(kind).label} email queued to it.")
    return " ".join(parts)
