"""Every non-trivial read: status links, the public step, the overdue rule,
the dashboard's counts."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, F, Q, QuerySet, Sum
from django.db.models.expressions import Combinable
from django.utils import timezone

from .models import HeldSubmission, HelpFeedback, ResetRequest, Status
from .practice_time import practice_day_start, practice_today, week_start
from .references import REFERENCE_LENGTH, is_reference, normalize_reference


def reset_by_status_token(*, token: str) -> ResetRequest | None:
    """The request a status link points at, or None for a wrong token or a
    request whose personal data (and so its link) was purged.

    The token is the reference (to find the row) followed by a secret that
    is compared in constant time.
    """
    reference = normalize_reference(token[:REFERENCE_LENGTH])
    secret = token[REFERENCE_LENGTH:]
    # Only a well-formed reference reaches the database (PostgreSQL refuses
    # a NUL byte in a query parameter with an error, not an empty result).
    if len(secret) < 22 or not is_reference(reference):
        return None
    reset = ResetRequest.objects.filter(reference=reference).exclude(status_secret="").first()
    if reset is None or not secrets.compare_digest(reset.status_secret.encode(), secret.encode()):
        return None
    return reset


_PUBLIC_STEP = {
    Status.NEW: "received",
    Status.IN_PROGRESS: "verifying",
    Status.WAITING: "verifying",
    Status.RESOLVED: "reset",
    Status.CLOSED: "closed",
}


def public_step(reset: ResetRequest) -> str:
    """The coarse step a patient sees: received → being verified → access
    reset, or closed."""
    return _PUBLIC_STEP[Status(reset.status)]


# The overdue rule: open, not waiting on the patient (its due clock is
# paused), and past its due time. overdue_q() for queries, is_overdue() for a
# row already loaded.
_DUE_CLOCK_RUNS = (Status.NEW, Status.IN_PROGRESS)


def overdue_q(now: datetime | None = None) -> Q:
    return Q(status__in=_DUE_CLOCK_RUNS, due_at__lt=now or timezone.now())


def is_overdue(reset: ResetRequest, now: datetime | None = None) -> bool:
    return reset.status in _DUE_CLOCK_RUNS and reset.due_at < (now or timezone.now())


def resets_overdue() -> QuerySet[ResetRequest]:
    return ResetRequest.objects.filter(overdue_q()).order_by("due_at")


# --- The request page -------------------------------------------------------

# The list's own order (the model's, to which the admin adds -pk to make it
# total): open first, those whose email address does not work first among
# them (call the patient), then oldest first.
QUEUE_ORDER = ("-is_open", "-email_undeliverable", "submitted_at", "-pk")
# The request page lists at most this many earlier requests of its patient.
EARLIER_REQUESTS_LIMIT = 20


def next_in_queue(*, user_id: int, after: ResetRequest) -> ResetRequest | None:
    """Where "… and open the next request" leads: the first request in the
    queue's order (one whose email address does not work first, then the
    oldest) that is new or in progress (waiting ones wait on their patient)
    and unassigned or the staff member's own, other than the one just done."""
    return (
        ResetRequest.objects.filter(is_open=True, status__in=_DUE_CLOCK_RUNS)
        .filter(Q(assignee__isnull=True) | Q(assignee_id=user_id))
        .exclude(pk=after.pk)
        .order_by(*QUEUE_ORDER)
        .only("pk")
        .first()
    )


def earlier_requests(reset: ResetRequest) -> list[ResetRequest]:
    """The patient's other requests (same email and date of birth, the
    duplicate rule's identity), newest first; none once erased."""
    if reset.personal_data_purged_at is not None or not reset.email:
        return []
    return list(
        ResetRequest.objects.filter(email=reset.email, date_of_birth=reset.date_of_birth)
        .exclude(pk=reset.pk)
        .order_by("-submitted_at", "-pk")
        .only("pk", "reference", "status", "submitted_at", "ended_at", "outcome", "close_reason")[
            :EARLIER_REQUESTS_LIMIT
        ]
    )


# --- The dashboard on the admin index ---------------------------------------

# The median is taken over the requests resolved in this many days.
MEDIAN_WINDOW_DAYS = 30
# The guide's "helped" against the requests filed: over this many practice days.
HELP_WINDOW_DAYS = 30


class _Median(Aggregate):
    """PostgreSQL's ``percentile_cont(0.5) WITHIN GROUP (ORDER BY …)``: the
    median computed by the database, an interval for an interval. Django's
    FILTER (WHERE …) clause goes after it, as PostgreSQL's grammar wants."""

    function = "percentile_cont"
    name = "Median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = DurationField()


def queue_dashboard() -> dict[str, Any]:
    """The queue at a glance: open, overdue, waiting, open with an email
    address that does not work, resolved this week
    (since Monday 00:00, practice time) and the median time from submission
    to resolution of the requests resolved in the last 30 days (wall-clock
    time, waiting included: what the patient lived through).

    And the guide's pair over the last 30 practice days (today included):
    how many said "yes, this solved it" (``helped``) against how many reset
    requests were filed (``requests_filed``).

    One aggregate query on PostgreSQL. Elsewhere (SQLite, the local run) a
    second query reads the one or two middle durations in order with
    LIMIT/OFFSET, so no more than two rows reach Python whatever the table
    holds. Both read only open requests and those that ended in the window
    (the ``is_open`` and ``ended_at`` indexes), never the whole table. The
    guide's yes answers are one more query, a sum over at most 30 days'
    rows of HelpFeedback.
    """
    now = timezone.now()
    monday = week_start(now)
    since = now - timedelta(days=MEDIAN_WINDOW_DAYS)
    # The guide's counts are per practice day: the requests are counted
    # over the same days.
    help_first_day = practice_today(now) - timedelta(days=HELP_WINDOW_DAYS - 1)
    help_since = practice_day_start(help_first_day)
    resolved_in_window = Q(status=Status.RESOLVED, ended_at__gte=since)
    time_to_resolve = F("ended_at") - F("submitted_at")
    aggregates: dict[str, Any] = {
        "open": Count("pk", filter=Q(is_open=True)),
        "overdue": Count("pk", filter=overdue_q()),
        "waiting": Count("pk", filter=Q(status=Status.WAITING)),
        # Open requests whose patient's email address does not work.
        "email_undeliverable": Count("pk", filter=Q(is_open=True, email_undeliverable=True)),
        "resolved_this_week": Count("pk", filter=Q(status=Status.RESOLVED, ended_at__gte=monday)),
        "resolved_in_window": Count("pk", filter=resolved_in_window),
        "requests_filed": Count("pk", filter=Q(submitted_at__gte=help_since)),
    }
    on_postgresql = connection.vendor == "postgresql"
    if on_postgresql:
        aggregates["median_time_to_resolve"] = _Median(time_to_resolve, filter=resolved_in_window)
    # The window is longer than a week, so this covers every count (a
    # request filed in the guide's window is open or ended after it).
    ended_since = min(since, help_since)
    counts = ResetRequest.objects.filter(Q(is_open=True) | Q(ended_at__gte=ended_since)).aggregate(**aggregates)
    if not on_postgresql:
        counts["median_time_to_resolve"] = _median_by_offset(
            ResetRequest.objects.filter(resolved_in_window), time_to_resolve, counts["resolved_in_window"]
        )
    return {
        **counts,
        # Held submissions are few (a week's at most): a plain count.
        "held": HeldSubmission.objects.count(),
        "helped": HelpFeedback.objects.filter(day__gte=help_first_day, answer=HelpFeedback.Answer.YES).aggregate(
            helped=Sum("count", default=0)
        )["helped"],
        "week_start": monday,
        "window_days": MEDIAN_WINDOW_DAYS,
        "help_window_days": HELP_WINDOW_DAYS,
    }


def _median_by_offset(queryset: QuerySet[ResetRequest], duration: Combinable, count: int) -> timedelta | None:
    """The median of ``duration`` over the ``count`` rows of ``queryset``: the
    middle row, or the mean of the two middle rows, read in order with a
    LIMIT/OFFSET (at most two rows leave the database)."""
    if count == 0:
        return None
    low = (count - 1) // 2
    in_order = queryset.annotate(time_to_resolve=duration).order_by("time_to_resolve")
    middle = list(in_order.values_list("time_to_resolve", flat=True)[low : count // 2 + 1])
    if not middle:  # a row ended between the two queries
        return None
    return sum(middle, timedelta()) / len(middle)
