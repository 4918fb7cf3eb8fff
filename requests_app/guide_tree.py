"""The guided help as data: the practice's troubleshooting steps as a tree of
questions, one per page, whose answers lead to the next question or to an
end step (what to do), each at ``/help/<slug>/`` (views/guide.py renders any
of them).

Every fact on these pages is one of the practice's own steps, in this order:
used the portal with another doctor (the same login), family members sharing
one email (one login), the online intake form (its login), the invitation
link (after the visit, once the provider signed the notes; within
ACCESS_LINK_HOURS; Spam/Junk and the Promotions, Social and Primary tabs),
the security code (in the email the portal refers to, or by text message),
the portal's own help for the password or user name, and past the window
the reset request.

Texts take ``%(portal)s`` (PORTAL_NAME) and ``%(hours)s`` (ACCESS_LINK_HOURS),
filled in by ``fill`` in the patient's language. An end step's body is a
template, ``templates/requests_app/help/<slug>.html``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# The first question, behind the start page's button.
FIRST = "other-doctor"

START_DESCRIPTION = _(
    "Can’t get into your %(portal)s patient portal? Answer a few short questions to find what to do, "  # noqa: RUF001
    "or ask us to reset your access."
)


class Window(enum.Enum):
    """What an end step knows of the access window (ACCESS_LINK_HOURS after
    the visit): which next step "No, this did not solve it" leads to."""

    PASSED = "passed"  # the reset request was the step: then write to us
    OPEN = "open"  # inside the window: the reset request once it has passed
    UNKNOWN = "unknown"  # not asked: the reset request if it has passed


@dataclass(frozen=True)
class Answer:
    label: str | Promise
    next: str


@dataclass(frozen=True)
class Step:
    slug: str
    # The page's H1 and <title>: the question, or what to do.
    title: str | Promise
    # The page's meta description, for search engines.
    description: str | Promise
    # A question's answers; an end step has none.
    answers: tuple[Answer, ...] = ()
    # A question's hint, under the H1.
    hint: str | Promise | None = None
    # An end step: the step to try next when this one did not solve it.
    then: str | None = None
    window: Window = Window.UNKNOWN
    # A question's answers side by side as short buttons (Yes / No), or
    # stacked as full-width choices (longer answers).
    short_answers: bool = field(default=False)

    @property
    def is_end(self) -> bool:
        return not self.answers

    @property
    def template(self) -> str:
        """An end step's body."""
        return f"requests_app/help/{self.slug}.html"


def fill(text: str | Promise) -> str:
    """``text`` in the active language, with the portal's name and the
    window's hours put in."""
    return str(text) % {"portal": settings.PORTAL_NAME, "hours": settings.ACCESS_LINK_HOURS}


def _yes_no(yes: str, no: str) -> tuple[Answer, ...]:
    return (Answer(_("Yes"), yes), Answer(_("No"), no))


STEPS: dict[str, Step] = {
    step.slug: step
    for step in (
        # --- Questions ----------------------------------------------------------
        Step(
            "other-doctor",
            _("Have you used %(portal)s before, with another doctor?"),
            _("Used %(portal)s with another doctor? Find out which login to use for our practice."),
            answers=_yes_no("same-login", "shared-email"),
            short_answers=True,
        ),
        Step(
            "shared-email",
            _("Does a family member use %(portal)s with the same email address as you?"),
            _("Family members who share one email address share one %(portal)s login."),
            answers=_yes_no("family-sharing", "intake-form"),
            short_answers=True,
        ),
        Step(
            "intake-form",
            _("Did you fill in our online intake form?"),
            _("To set up your %(portal)s access, use your intake-form login or the invitation link we email."),
            hint=_(
                "We send it with your appointment reminder. The form is one way to set up your portal access. "
                "The other is the invitation link we email after your visit."
            ),
            answers=_yes_no("intake-login", "since-visit"),
            short_answers=True,
        ),
        Step(
            "since-visit",
            _("How long ago was your visit?"),
            _("Less or more than %(hours)s hours since your visit? That decides what to do next."),
            answers=(
                Answer(_("Less than %(hours)s hours ago"), "found-email"),
                Answer(_("More than %(hours)s hours ago"), "request-reset"),
            ),
        ),
        Step(
            "found-email",
            _("Have you found the invitation email?"),
            _("Where to look for your %(portal)s invitation email, and what to do with it."),
            hint=_("We send the invitation through the portal, so the email comes from %(portal)s on our behalf."),
            answers=_yes_no("where-stuck", "invitation-email"),
            short_answers=True,
        ),
        Step(
            "where-stuck",
            _("Where are you stuck?"),
            _("Stuck on the security code, your password or your user name? Here is what to do."),
            answers=(
                Answer(_("The portal asks me for a security code"), "security-code"),
                Answer(_("My password or user name"), "password-help"),
            ),
        ),
        # --- End steps: what to do ------------------------------------------
        Step(
            "same-login",
            _("Use the same login"),
            _("Used %(portal)s with another doctor? Use the same login for our practice."),
            then="password-help",
        ),
        Step(
            "family-sharing",
            _("One email address, one portal login"),
            _("Family members who share one email address use one %(portal)s login for all of them."),
        ),
        Step(
            "intake-login",
            _("Use the login from our intake form"),
            _("Filled in our online intake form? That created your %(portal)s login."),
            then="password-help",
        ),
        Step(
            "invitation-email",
            _("Look for your invitation email"),
            _("When the %(portal)s invitation email comes, and where to look for it: Spam, Junk and your tabs."),
            window=Window.OPEN,
        ),
        Step(
            "security-code",
            _("Get the security code by text message"),
            _("Stuck on the %(portal)s security code? Get it by text message instead."),
            then="password-help",
            window=Window.OPEN,
        ),
        Step(
            "password-help",
            _("Get help with your password or user name"),
            _("Help from %(portal)s with your password, user name or security code."),
        ),
        Step(
            "request-reset",
            _("More than %(hours)s hours since your visit"),
            _("More than %(hours)s hours since your visit and still no portal access? Ask us to reset it."),
            window=Window.PASSED,
        ),
    )
}


def step(slug: str) -> Step | None:
    return STEPS.get(slug)


def parents() -> dict[str, str]:
    """Each step's previous step (the question one of whose answers leads
    to it), which its Back link goes to; the first question's is the start
    page, which is not a step and has no entry."""
    found: dict[str, str] = {}
    for parent in STEPS.values():
        for answer in parent.answers:
            found.setdefault(answer.next, parent.slug)
    return found


PARENTS = parents()


def paths(slug: str = FIRST, before: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every way through the tree from ``slug`` to an end step, as the
    slugs passed on the way (both included)."""
    here = (*before, slug)
    current = STEPS[slug]
    if current.is_end:
        yield here
        return
    for answer in current.answers:
        if answer.next not in here:  # a loop would be a bug the tests catch
            yield from paths(answer.next, here)
