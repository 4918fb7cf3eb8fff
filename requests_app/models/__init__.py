"""Reset requests, their timeline and their outbox.

The model knows which status moves there are (``MOVES``, keyed by the staff
action that makes each); ``services.workflow`` is the only code that makes
them.
"""

from ..references import new_status_secret
from .audit import ExportRecord
from .intake import HeldSubmission, HelpFeedback
from .messages import PLACEHOLDERS, MessageTemplate, PatientMessage
from .outbox import PATIENT_EMAIL_KINDS, DeliveryReport, OutboundEmail
from .reset_request import (
    MOVES,
    OPEN_STATUSES,
    Action,
    CloseReason,
    FamilyMember,
    Move,
    Outcome,
    Reason,
    ReopenReason,
    ResetRequest,
    Status,
)
from .timeline import AppendOnlyError, RequestEvent, RequestEventQuerySet

__all__ = [
    "MOVES",
    "OPEN_STATUSES",
    "PATIENT_EMAIL_KINDS",
    "PLACEHOLDERS",
    "Action",
    "AppendOnlyError",
    "CloseReason",
    "DeliveryReport",
    "ExportRecord",
    "FamilyMember",
    "HeldSubmission",
    "HelpFeedback",
    "MessageTemplate",
    "Move",
    "OutboundEmail",
    "Outcome",
    "PatientMessage",
    "Reason",
    "ReopenReason",
    "RequestEvent",
    "RequestEventQuerySet",
    "ResetRequest",
    "Status",
    # Named by migration 0001 as the status secret's default.
    "new_status_secret",
]
