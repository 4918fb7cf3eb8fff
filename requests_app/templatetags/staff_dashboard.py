"""The queue at a glance, on top of the admin index (templates/admin/index.html)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from .. import charts, selectors
from ..formatting import format_age

register = template.Library()


@register.inclusion_tag("admin/requests_app/includes/dashboard.html", takes_context=True)
def queue_dashboard(context: template.Context) -> dict[str, Any]:
    """The dashboard's tiles, each linking to the list filtered the same way,
    and the charts of the last twelve weeks under them (requests_app/charts.py).
    Staff who may not see requests get nothing (and cost no query)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not (
        user.has_perm("requests_app.view_resetrequest") or user.has_perm("requests_app.change_resetrequest")
    ):
        return {"show": False}
    numbers = selectors.queue_dashboard()
    changelist = reverse("admin:requests_app_resetrequest_changelist")

    def filtered(**params: str) -> str:
        return f"{changelist}?{urlencode(params)}"

    # Open requests whose patient's email does not work: only where an email
    # provider reports bounces (EMAIL_PROVIDER), or while a request still
    # carries the mark from when one did.
    undeliverable = [
        {
            "key": "email_undeliverable",
            "label": "Email does not work",
            "value": numbers["email_undeliverable"],
            "url": filtered(email_address="does_not_work", state="open"),
            "hint": "the email provider reported it: call the patient",
            "alert": numbers["email_undeliverable"] > 0,
        }
    ][: 1 if settings.EMAIL_PROVIDER or numbers["email_undeliverable"] else 0]
    week_start = timezone.localtime(numbers["week_start"])
    median = numbers["median_time_to_resolve"]
    return {
        "show": True,
        **charts.dashboard_charts(),
        "tiles": [
            {
                "key": "open",
                "label": "Open",
                "value": numbers["open"],
                "url": filtered(state="open"),
                "hint": "new, in progress or waiting",
            },
            {
                "key": "overdue",
                "label": "Overdue",
                "value": numbers["overdue"],
                "url": filtered(overdue="yes"),
                "hint": "past their due time",
                "alert": numbers["overdue"] > 0,
            },
            *undeliverable,
            {
                "key": "held",
                "label": "Held submissions",
                "value": numbers["held"],
                "url": reverse("admin:requests_app_heldsubmission_changelist"),
                "hint": "suspected spam: a real patient may be among them",
                "alert": numbers["held"] > 0,
            },
            {
                "key": "waiting",
                "label": "Waiting on patient",
                "value": numbers["waiting"],
                "url": filtered(status__exact="waiting"),
                "hint": "due clock paused",
            },
            {
                "key": "resolved_this_week",
                "label": "Resolved this week",
                "value": numbers["resolved_this_week"],
                "url": filtered(status__exact="resolved", state="ended_this_week"),
                "hint": f"since Monday {week_start:%b} {week_start.day}",
            },
            {
                "key": "median",
                "label": "Median time to resolve",
                "value": format_age(median) if median is not None else "—",
                "url": None,
                "hint": (
                    f"calendar time, waiting included; {numbers['resolved_in_window']} resolved "
                    f"in the last {numbers['window_days']} days"
                    if median is not None
                    else f"nothing resolved in the last {numbers['window_days']} days"
                ),
            },
            {
                "key": "helped",
                "label": "Helped by the guide",
                "value": numbers["helped"],
                "url": None,
                "hint": (
                    f"{numbers['helped']} said yes, {numbers['requests_filed']} "
                    f"{'request' if numbers['requests_filed'] == 1 else 'requests'} filed "
                    f"(last {numbers['help_window_days']} days)"
                ),
            },
        ],
    }
