"""Filters for patient pages and patient emails: ``{% load patient_pages %}``."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from ..phones import phone_display, phone_href

register = template.Library()


@register.filter
def html_datetime(value: datetime | None) -> str:
    """A ``<time datetime>`` value: HTML's valid normalized global date and
    time string, in UTC to the second (``2026-03-14T13:30:05Z``). Django's
    ``|date:"c"`` writes microseconds, which HTML does not allow (at most
    three fractional digits). "" for no time."""
    if value is None:
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Emails take inline styles only; pages take Bootstrap's classes (the
# Content-Security-Policy allows no inline style there).
_TEL_LINK_ATTRIBUTES = {
    "page": 'class="text-nowrap"',
    "email": 'style="color:#0a58ca;white-space:nowrap;"',
}


@register.filter
def tel_link(e164: str, where: str = "page") -> SafeString:
    """A tap-to-call link to an E.164 number, the number written as people
    write it: ``<a href="tel:+15550100199">(555) 010-0199</a>``. ``where``
    is "page" (the default) or "email". It goes into a translated sentence
    as a placeholder (``blocktranslate with phone=…|tel_link``), so a
    sentence reads the same in the text part of an email with the number
    as plain text."""
    return format_html(
        '<a href="{}" {}>{}</a>',
        phone_href(e164),
        mark_safe(_TEL_LINK_ATTRIBUTES[where]),  # noqa: S308 — our own constant
        phone_display(e164),
    )
