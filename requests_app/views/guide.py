"""The guided help: the start page at ``/``, then the practice's troubleshooting
steps one at a time at ``/help/<slug>/`` (the tree is guide_tree.STEPS), each
end step asking "Did this solve it?".

Every page of the guide is the same for everyone in a language: no cookie,
no CSRF token, no database read, so a cache may keep it and a search engine
may index it. The answer to "Did this solve it?" is a CSRF-exempt POST that
adds one to a per-day count (models.HelpFeedback) and redirects to a thank
you; nothing about whoever answered is kept.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from portal_reset.client_address import client_ip

from .. import guide_tree
from ..guide_tree import Step, fill
from ..models import HelpFeedback
from ..practice_time import practice_today
from ..rate_limits import over_rate_limit

logger = logging.getLogger(__name__)

# Answers counted per client address: a patient answers a few; more is a
# script inflating the counts. Past it the answer gets its thank-you page
# and is not counted.
FEEDBACK_RATE = "30/h"


def _portal_context() -> dict[str, Any]:
    # practice_context (the context processor) has the portal's name, login
    # page and help guide; the "trouble logging in" article only the guide uses.
    return {"portal_trouble_url": settings.PORTAL_TROUBLE_URL}


def _step_or_404(slug: str) -> Step:
    step = guide_tree.step(slug)
    if step is None:
        raise Http404
    return step


def _step_url(slug: str) -> str:
    return reverse("requests_app:help_step", args=[slug])


@require_safe
def guide(request: HttpRequest) -> HttpResponse:
    """The start page: what the guide is for, the Start button, and the two
    ways out for a patient who knows what they need: the reset request (past
    the window) and the portal's login page."""
    return render(
        request,
        "requests_app/guide.html",
        {
            **_portal_context(),
            "start_url": _step_url(guide_tree.FIRST),
            "description": fill(guide_tree.START_DESCRIPTION),
        },
    )


@require_safe
def help_step(request: HttpRequest, slug: str) -> HttpResponse:
    """One step of the tree: a question and its answers (plain links), or an
    end step with what to do and "Did this solve it?"."""
    step = _step_or_404(slug)
    parent = guide_tree.PARENTS.get(slug)
    context = {
        **_portal_context(),
        "step": step,
        "title": fill(step.title),
        "description": fill(step.description),
        "hint": fill(step.hint) if step.hint else "",
        "answers": [{"label": fill(a.label), "url": _step_url(a.next), "slug": a.next} for a in step.answers],
        "back_url": _step_url(parent) if parent else reverse("requests_app:guide"),
    }
    return render(request, "requests_app/help/step.html", context)


# No CSRF token in the form: the step pages stay the same for everyone and
# set no cookie. What a forged POST could do is add one to a count, which
# the per-address limit bounds.
@csrf_exempt
@require_POST
def help_feedback(request: HttpRequest, slug: str) -> HttpResponse:
    """ "Did this solve it?" answered: one more yes or no for the step today,
    then 303 to the thank-you. An unknown step, a question (not an end
    step) or an answer other than yes or no: 400, nothing counted."""
    step = guide_tree.step(slug)
    answer = request.POST.get("answer", "")
    if step is None or not step.is_end or answer not in HelpFeedback.Answer.values:
        return render(request, "requests_app/help/bad_feedback.html", status=400)
    if over_rate_limit(request, group="help-feedback", key=client_ip(request), rate=FEEDBACK_RATE):
        logger.info("help feedback over the per-address limit, not counted")
    else:
        HelpFeedback.record(step=slug, answer=answer, day=practice_today())
    view = "requests_app:help_solved" if answer == HelpFeedback.Answer.YES else "requests_app:help_not_solved"
    response = redirect(view, slug=slug)
    response.status_code = 303
    return response


@require_safe
def help_solved(request: HttpRequest, slug: str) -> HttpResponse:
    """The thank-you after "Yes, this solved it"."""
    step = _step_or_404(slug)
    if not step.is_end:
        raise Http404
    return render(
        request,
        "requests_app/help/solved.html",
        {**_portal_context(), "step": step, "step_url": _step_url(slug)},
    )


@require_safe
def help_not_solved(request: HttpRequest, slug: str) -> HttpResponse:
    """The thank-you after "No": the next sensible step. Another step of the
    guide if the tree names one; the reset request while the window may have
    passed (worded by what the step knows of it); the practice's contact when
    the reset request itself was the step."""
    step = _step_or_404(slug)
    if not step.is_end:
        raise Http404
    then = guide_tree.step(step.then) if step.then else None
    return render(
        request,
        "requests_app/help/not_solved.html",
        {
            **_portal_context(),
            "step": step,
            "step_url": _step_url(slug),
            "then_title": fill(then.title) if then else "",
            "then_url": _step_url(then.slug) if then else "",
            # "passed", "open" or "unknown" (guide_tree.Window).
            "window": step.window.value,
        },
    )
