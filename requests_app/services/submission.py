"""A patient's form becomes a reset request (or joins their open one)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, models, transaction
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone, translation
from django.views.decorators.debug import sensitive_variables

from ..db import prepared_statement_cursor
from ..models import FamilyMember, OutboundEmail, RequestEvent, ResetRequest, Status
from ..outbox.publish import publish_together
from ..outbox.queue import email_queue_many
from ..references import new_reference
from ..working_hours import due_after

logger = logging.getLogger(__name__)

# A reference collision (about 1 in 10^11) or a concurrent first submission
# of the same patient is tried again this many times.
SUBMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class Submission:
    """A patient's validated form, as forms.py hands it over."""

    first_name: str
    last_name: str
    date_of_birth: date
    email: str
    phone: str
    appointment_date: date
    reason: str
    details: str = ""
    family: tuple[tuple[str, str, date], ...] = ()
    # The language the patient used the site in: their emails are in it.
    language: str = "en"

    def patient_fields(self) -> dict[str, Any]:
        """What the form said, under the field names a ResetRequest and a
        HeldSubmission both store it under (the family and language apart)."""
        return {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "date_of_birth": self.date_of_birth,
            "email": self.email,
            "phone": self.phone,
            "appointment_date": self.appointment_date,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass(frozen=True)
class SubmitResult:
    reset: ResetRequest
    created: bool


# Error reports show no local variable of this call or of anything it calls.
@sensitive_variables()
def reset_submit(*, submission: Submission, reference: str | None = None) -> SubmitResult:
    """File a reset request, or attach it to the patient's open one.

    Atomic: the request, its first event and its acknowledgment (plus the
    staff notification) are stored together or not at all; the emails are
    queued after commit. A second submission with the same email and date of
    birth while a request is open is recorded on that request's timeline and
    gets a fresh acknowledgment, so the caller cannot tell the two apart.
    ``reference``: the one a new request takes (a released held submission
    keeps the reference its sender was shown), if it is still free.

    On PostgreSQL a new request is one statement, a repeated submission two
    (below); SQLite takes the ORM's path, as does the rare submission those
    leave undecided.
    """
    for _ in range(SUBMIT_ATTEMPTS):
        try:
            if connection.vendor == "postgresql":
                with single_statement():
                    result = _submit_in_one_statement(submission, reference or new_reference())
                if result is not None:
                    return result
                # The patient's open request ended between the two
                # statements: the ORM's path decides again.
            with transaction.atomic():
                return _submit_once(submission, reference or new_reference())
        except IntegrityError:
            # Either a reference collision or a concurrent first submission
            # by the same patient won the race: try again (with a reference
            # of our own), which attaches to that one.
            reference = None
            continue
    raise RuntimeError(f"Could not store the reset request after {SUBMIT_ATTEMPTS} attempts.")


@sensitive_variables()
def reset_attach_quietly(*, submission: Submission) -> ResetRequest | None:
    """Record a submission on the patient's open request without emailing
    anyone (it came past the per-email limit); None when the patient has no
    open request. Atomic (on PostgreSQL one statement)."""
    message = _describe(submission) + "\n(Past the per-email limit: no email was sent.)"
    if connection.vendor == "postgresql":
        with single_statement():
            return _attach_in_one_statement(submission, message)
    with transaction.atomic():
        existing = _open_request_of(submission)
        if existing is not None:
            RequestEvent.objects.record(existing, RequestEvent.Kind.DUPLICATE, message=message)
        return existing


@contextlib.contextmanager
def single_statement() -> Iterator[None]:
    """Where a single statement needs no transaction of its own: on its own
    (autocommit) it is atomic already, and BEGIN and COMMIT would be two
    round trips more. Inside the caller's transaction, a savepoint, so that
    a failed statement (a reference collision) can be tried again."""
    if connection.in_atomic_block:
        with transaction.atomic():
            yield
    else:
        yield


def _open_request_of(submission: Submission) -> ResetRequest | None:
    return (
        ResetRequest.objects.select_for_update()
        .filter(email=submission.email, date_of_birth=submission.date_of_birth, is_open=True)
        .first()
    )


def _submit_once(submission: Submission, reference: str) -> SubmitResult:
    now = timezone.now()
    existing = _open_request_of(submission)
    if existing is not None:
        # The request keeps the language it was filed in (a staff member may
        # change it): whoever else knows the patient's email and date of
        # birth cannot switch the patient's emails to another language.
        email_queue_many(
            messages=[(existing, OutboundEmail.Kind.ACKNOWLEDGMENT, existing.email)],
            also_record=[
                RequestEvent(
                    reset=existing, kind=RequestEvent.Kind.DUPLICATE, message=_describe(submission), created_at=now
                )
            ],
        )
        return SubmitResult(reset=existing, created=False)

    reset = ResetRequest.objects.create(
        reference=reference,
        **submission.patient_fields(),
        language=_patient_language(submission.language),
        submitted_at=now,
        due_at=due_after(now),
    )
    FamilyMember.objects.bulk_create(
        FamilyMember(reset=reset, first_name=first, last_name=last, date_of_birth=dob)
        for first, last, dob in submission.family
    )
    # Both emails in one go: one insert for the rows, one for every event
    # (the "submitted" one first).
    email_queue_many(
        messages=[
            (reset, OutboundEmail.Kind.ACKNOWLEDGMENT, reset.email),
            (reset, OutboundEmail.Kind.STAFF_NEW_REQUEST, settings.STAFF_NOTIFY_EMAIL),
        ],
        also_record=[RequestEvent(reset=reset, kind=RequestEvent.Kind.SUBMITTED, to_status=Status.NEW, created_at=now)],
    )
    logger.info("reset request submitted reference=%s", reset.reference)
    return SubmitResult(reset=reset, created=True)


def _patient_language(code: str) -> str:
    return code if code in dict(settings.LANGUAGES) else "en"


def _describe(submission: Submission) -> str:
    """What a repeated submission said, for staff on the timeline (in
    English, whatever language the patient used)."""
    with translation.override("en"):
        reason = str(ResetRequest.Reason(submission.reason).label)
    lines = [
        f"Name: {submission.first_name} {submission.last_name}",
        f"Phone: {submission.phone}",
        f"Appointment: {submission.appointment_date.isoformat()}",
        f"Reason: {reason}",
    ]
    lines += [f"Family member: {first} {last} ({dob.isoformat()})" for first, last, dob in submission.family]
    if submission.details:
        lines.append(f"Details: {submission.details}")
    return "\n".join(lines)


# --- PostgreSQL: a submission in one statement -----------------------------------
#
# The same rows the ORM's path writes (_submit_once), in one statement and
# no transaction of its own (BEGIN and COMMIT would be two round trips
# more): the request, its family, the acknowledgment and the staff notice in
# the outbox, the "submitted" and "email queued" events. The request's
# INSERT ... ON CONFLICT DO NOTHING targets the partial unique index of open
# requests (resetrequest_one_open_per_patient): for a patient with an open
# request it inserts nothing (and PostgreSQL logs no error, as a failed
# INSERT would), so neither does the rest of the statement, and a second
# statement locks that request (SELECT ... FOR UPDATE, as the ORM's path
# does) and records on it the "submitted again" event, the acknowledgment
# and its "email queued" event. A repeated submission is the rare case: the
# first statement carries only the new request's rows. Every row's columns
# and values are those Django's INSERT for its model would have (field
# defaults, auto_now, database defaults left to the database), so a field
# added later is written here too; tests/test_submit_postgres.py compares
# the rows of the two paths. The SQL text depends only on the rows' shape,
# and is built once per shape.


@functools.cache
def _one_open_per_patient() -> tuple[str, str]:
    """The conflict target that picks resetrequest_one_open_per_patient (its
    columns and condition), and the same as a WHERE clause."""
    [constraint] = [c for c in ResetRequest._meta.constraints if c.name == "resetrequest_one_open_per_patient"]
    assert isinstance(constraint, models.UniqueConstraint) and constraint.condition == models.Q(is_open=True)
    quote = connection.ops.quote_name
    fields = [ResetRequest._meta.get_field(name) for name in constraint.fields]
    columns = [quote(field.column) for field in fields if isinstance(field, models.Field)]
    assert len(columns) == len(fields)
    target = f"({', '.join(columns)}) WHERE {quote('is_open')}"
    where = " AND ".join([f"{column} = %s" for column in columns] + [quote("is_open")])
    return target, where


@functools.cache
def _db_type(field: models.Field[Any, Any]) -> str:
    return str(field.db_type(connection))


def _prepared(obj: models.Model, *, skip: str = "") -> tuple[tuple[tuple[str, str], ...], list[Any]]:
    """The columns Django would INSERT for ``obj`` (each with its type) and
    their values prepared for the database; the id and ``skip`` left out."""
    # The connection itself, not the django.db.connection proxy: each field's
    # preparation looks up several of its attributes.
    db = connections[DEFAULT_DB_ALIAS]
    columns, values = [], []
    for field in type(obj)._meta.local_concrete_fields:
        if field.primary_key or field.generated or field.attname == skip:
            continue
        value = field.pre_save(obj, add=True)
        if isinstance(value, DatabaseDefault):
            continue
        columns.append((field.column, _db_type(field)))
        values.append(field.get_db_prep_save(value, db))
    return tuple(columns), values


@functools.cache
def _rows_for_target_sql(
    name: str, target: str, table: str, columns: tuple[tuple[str, str], ...], count: int, returning: str
) -> str:
    """``name AS (INSERT INTO table … SELECT target.id, … FROM target, (VALUES …))``:
    ``count`` rows, in their order, each pointing at the request of the CTE
    ``target`` (none when the statement found no request). The values are
    cast to their columns' types: unlike VALUES in an INSERT, a SELECT does
    not take its types from the columns it fills."""
    quote = connection.ops.quote_name
    names = [f"c{i}" for i in range(len(columns))]
    casts = ", ".join(f"%s::{db_type}" for _, db_type in columns)
    rows = ", ".join(f"({number}, {casts})" for number in range(count))
    targets = ", ".join([quote("reset_id")] + [quote(column) for column, _ in columns])
    return (
        f"{name} AS (INSERT INTO {quote(table)} ({targets}) "  # noqa: S608 - names from the models
        f"SELECT {target}.id, {', '.join('v.' + n for n in names)} FROM {target} "
        f"CROSS JOIN (VALUES {rows}) AS v(n, {', '.join(names)}) "
        f"ORDER BY v.n RETURNING {returning})"
    )


def _rows_for_target(
    name: str, target: str, rows: Sequence[models.Model], returning: str = "id"
) -> tuple[str, list[Any]]:
    """The CTE inserting ``rows`` (unsaved objects, all of one model and
    shape) for the request of the CTE ``target``, and its parameters."""
    prepared = [_prepared(obj, skip="reset_id") for obj in rows]
    columns = prepared[0][0]
    assert all(shape == columns for shape, _ in prepared), "rows of one CTE must have the same columns"
    sql = _rows_for_target_sql(name, target, rows[0]._meta.db_table, columns, len(rows), returning)
    return sql, [value for _, values in prepared for value in values]


def _ctes(target: str, tables: Sequence[tuple[str, Sequence[models.Model], str]]) -> tuple[list[str], list[Any]]:
    """The CTEs inserting each (name, rows, returning) that has rows for the
    request of the CTE ``target``, and their parameters."""
    ctes: list[str] = []
    params: list[Any] = []
    for name, rows, returning in tables:
        if rows:
            sql, values = _rows_for_target(name, target, rows, returning)
            ctes.append(sql)
            params += values
    return ctes, params


@functools.cache
def _submit_sql(request_columns: tuple[tuple[str, str], ...], *ctes: str) -> str:
    quote = connection.ops.quote_name
    conflict, _ = _one_open_per_patient()
    return (
        f"WITH new AS (INSERT INTO {quote(ResetRequest._meta.db_table)} "  # noqa: S608
        f"({', '.join(quote(c) for c, _ in request_columns)}) VALUES ({', '.join(['%s'] * len(request_columns))}) "
        f"ON CONFLICT {conflict} DO NOTHING RETURNING id, reference), {', '.join(ctes)} "
        "SELECT new.id, new.reference, emails.id, emails.kind FROM new JOIN emails ON true"
    )


@functools.cache
def _attach_sql(*ctes: str, emails: bool) -> str:
    """The patient's open request, locked, with ``ctes`` on it."""
    table = connection.ops.quote_name(ResetRequest._meta.db_table)
    _, open_request = _one_open_per_patient()
    return (
        f"WITH open_request AS (SELECT id, reference FROM {table} "  # noqa: S608
        f"WHERE {open_request} FOR UPDATE), {', '.join(ctes)} SELECT open_request.id, open_request.reference"
        + (", emails.id, emails.kind FROM open_request JOIN emails ON true" if emails else " FROM open_request")
    )


def _execute(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with prepared_statement_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _submit_in_one_statement(submission: Submission, reference: str) -> SubmitResult | None:
    """A new request with everything it comes with in one statement or,
    when the patient has an open request, the submission attached to it in
    a second. None (nothing stored) when neither could be: the patient's
    open request ended between the two."""
    now = timezone.now()
    reset = ResetRequest(
        reference=reference,
        **submission.patient_fields(),
        language=_patient_language(submission.language),
        submitted_at=now,
        due_at=due_after(now),
    )

    def email(kind: str, to: str) -> OutboundEmail:
        return OutboundEmail(reset=reset, kind=kind, to=to, created_at=now, next_attempt_at=now)

    def event(kind: str, **fields: Any) -> RequestEvent:
        return RequestEvent(reset=reset, kind=kind, created_at=now, **fields)

    ack, queued = OutboundEmail.Kind.ACKNOWLEDGMENT, RequestEvent.Kind.EMAIL_QUEUED
    # The acknowledgment first: it is published, and sent, before the notice.
    emails = [email(ack, reset.email), email(OutboundEmail.Kind.STAFF_NEW_REQUEST, settings.STAFF_NOTIFY_EMAIL)]
    events = [
        event(RequestEvent.Kind.SUBMITTED, to_status=Status.NEW),
        *(event(queued, message=e.get_kind_display()) for e in emails),
    ]
    family = [
        FamilyMember(reset=reset, first_name=first, last_name=last, date_of_birth=dob)
        for first, last, dob in submission.family
    ]
    request_columns, params = _prepared(reset)
    ctes, values = _ctes("new", (("emails", emails, "id, kind"), ("events", events, "id"), ("family", family, "id")))
    rows = _execute(_submit_sql(request_columns, *ctes), params + values)
    created = bool(rows)
    if created:
        reset.pk = rows[0][0]
        reset._state.adding = False
        reset._state.db = connection.alias
        logger.info("reset request submitted reference=%s", reset.reference)
    else:
        # As the ORM's path words it (_submit_once, email_queue_many).
        emails = [email(ack, reset.email)]
        events = [
            event(RequestEvent.Kind.DUPLICATE, message=_describe(submission)),
            event(queued, message=emails[0].get_kind_display()),
        ]
        ctes, values = _ctes("open_request", (("emails", emails, "id, kind"), ("events", events, "id")))
        rows = _execute(_attach_sql(*ctes, emails=True), [submission.email, submission.date_of_birth, *values])
        if not rows:
            return None
        # The open request as the ORM would load it with only(): the rest on access.
        reset = ResetRequest.from_db(connection.alias, ["id", "reference"], list(rows[0][:2]))
    by_kind = {kind: email_id for *_, email_id, kind in rows}
    published = [(by_kind[e.kind], e.kind) for e in emails]
    transaction.on_commit(lambda: publish_together(published))
    return SubmitResult(reset=reset, created=created)


def _attach_in_one_statement(submission: Submission, message: str) -> ResetRequest | None:
    """The "submitted again" event on the patient's open request (locked, as
    the ORM's path locks it), in one statement; None when there is none."""
    event = RequestEvent(kind=RequestEvent.Kind.DUPLICATE, message=message, created_at=timezone.now())
    ctes, values = _ctes("open_request", (("events", [event], "id"),))
    rows = _execute(_attach_sql(*ctes, emails=False), [submission.email, submission.date_of_birth, *values])
    if not rows:
        return None
    # The request as the ORM would load it with only(): the rest on access.
    return ResetRequest.from_db(connection.alias, ["id", "reference"], list(rows[0]))
