"""Every write of the application, by domain: a patient's submission, the
staff workflow, held submissions, the digest and retention. Emails go through the outbox
(``requests_app.outbox``).

Each function is atomic, records its timeline event with the acting user in
the same transaction, and queues side effects (emails) only after commit.
Callers (views, admin, tasks, commands) never set ``status`` themselves.
"""

from .address_correction import email_sent_after_correction, reset_correct_email
from .digest import digest_queue_overdue
from .held import held_create, held_delete, held_purge_expired, held_release, reset_submit_past_email_limit
from .retention import resets_purge_expired
from .submission import Submission, SubmitResult, reset_attach_quietly, reset_submit
from .workflow import (
    check_move,
    check_verify_and_resolve,
    reset_add_note,
    reset_assign,
    reset_change_language,
    reset_close,
    reset_record_identity_check,
    reset_record_view,
    reset_reopen,
    reset_resend_acknowledgment,
    reset_resolve,
    reset_resume,
    reset_start,
    reset_verify_and_resolve,
    reset_wait,
    resets_close_stale_waiting,
)

__all__ = [
    "Submission",
    "SubmitResult",
    "check_move",
    "check_verify_and_resolve",
    "digest_queue_overdue",
    "email_sent_after_correction",
    "held_create",
    "held_delete",
    "held_purge_expired",
    "held_release",
    "reset_add_note",
    "reset_assign",
    "reset_attach_quietly",
    "reset_change_language",
    "reset_close",
    "reset_correct_email",
    "reset_record_identity_check",
    "reset_record_view",
    "reset_reopen",
    "reset_resend_acknowledgment",
    "reset_resolve",
    "reset_resume",
    "reset_start",
    "reset_submit",
    "reset_submit_past_email_limit",
    "reset_verify_and_resolve",
    "reset_wait",
    "resets_close_stale_waiting",
    "resets_purge_expired",
]
