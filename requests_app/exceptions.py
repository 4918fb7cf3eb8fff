"""The workflow's domain errors. Each message is written for staff: the admin
shows ``str(exc)`` as it is."""


class WorkflowError(Exception):
    """A change the workflow does not allow; the message is for staff."""


class TransitionNotAllowed(WorkflowError):
    """The move is not in the table of allowed moves from the current status."""


class ConcurrentChange(WorkflowError):
    """Someone else changed the request first; nothing was written."""


class IdentityNotVerified(WorkflowError):
    """Resolving needs the identity check recorded first, or the check
    recorded does not meet the rule."""
