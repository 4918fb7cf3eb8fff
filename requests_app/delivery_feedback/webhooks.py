"""The provider's tracking webhook: anymail's view for it, routed under
/email/anymail/ (portal_reset/urls.py) with anymail's own paths and names
(``reverse("anymail:postmark_tracking_webhook")``), for the configured
EMAIL_PROVIDER only. Importing it imports the package, whose receivers take
the reports the views send.

Not anymail.urls itself: that routes every provider's inbound and tracking
views, and a view whose provider has no WEBHOOK_SECRET takes any call
(anymail only warns). Here only the configured provider's URL answers, and
only once its authentication is configured; a request anymail cannot read
answers 400 instead of 500, with nothing of its body in a log.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import AnymailTrackingEvent
from anymail.webhooks.base import AnymailCoreWebhookView
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import URLPattern, path
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger(__name__)


class _UnreadableIs400:
    """anymail's view with every error in reading the request (a body that
    is not the provider's report, a broken signature block) answered 400
    (anymail's AnymailWebhookValidationFailure) instead of 500: nothing of
    the body reaches a log. Errors of ours, in the receivers, stay 500."""

    def run_validators(self, request: HttpRequest) -> None:
        try:
            super().run_validators(request)  # type: ignore[misc]
        except AnymailWebhookValidationFailure:
            raise
        except Exception:
            # Not chained: anymail's message may quote the body, and the
            # 400's log line would print it.
            raise AnymailWebhookValidationFailure("The webhook's request could not be read.") from None

    def parse_events(self, request: HttpRequest) -> list[AnymailTrackingEvent]:
        try:
            return list(super().parse_events(request))  # type: ignore[misc]
        except Exception:
            raise AnymailWebhookValidationFailure("The webhook's request is not a delivery report.") from None


def _view_class(base: type[AnymailCoreWebhookView]) -> type[AnymailCoreWebhookView]:
    return type(base.__name__, (_UnreadableIs400, base), {"__module__": __name__})


# Imported on the first call to its URL: every provider's route exists, but
# a provider's module (Amazon SES's imports boto3, a fifth of a second and
# some 20 MB) is loaded only where that provider is the one configured.
_VIEWS: dict[str, str] = {
    "postmark": "anymail.webhooks.postmark.PostmarkTrackingWebhookView",
    "amazon_ses": "anymail.webhooks.amazon_ses.AmazonSESTrackingWebhookView",
    "mailgun": "anymail.webhooks.mailgun.MailgunTrackingWebhookView",
    "sendgrid": "anymail.webhooks.sendgrid.SendGridTrackingWebhookView",
    "brevo": "anymail.webhooks.brevo.BrevoTrackingWebhookView",
}


@functools.cache
def _anymail_view(provider: str) -> Callable[..., HttpResponse]:
    return _view_class(import_string(_VIEWS[provider])).as_view()


def webhook_authentication_configured(provider: str) -> bool:
    """Whether the provider's webhook has what authenticates a call: basic
    auth (ANYMAIL_WEBHOOK_SECRET) or the provider's signature key. Without
    it anymail would take any call (it only warns)."""
    values = settings.ANYMAIL
    if provider == "mailgun":
        return bool(values.get("MAILGUN_WEBHOOK_SIGNING_KEY"))
    if provider == "sendgrid":
        return bool(values.get("WEBHOOK_SECRET") or values.get("SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY"))
    return bool(values.get("WEBHOOK_SECRET"))


def _tracking_view(provider: str) -> Callable[..., HttpResponse]:
    @csrf_exempt
    def tracking_webhook(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Only the configured provider's URL answers; and only once its
        # authentication is configured (settings refuse to start without
        # it when DEBUG is off).
        if provider != settings.EMAIL_PROVIDER:
            raise Http404("No such webhook.")
        if not webhook_authentication_configured(provider):
            logger.error("the %s webhook has no authentication configured: refused", provider)
            return HttpResponseForbidden("The webhook's authentication is not configured.\n")
        return _anymail_view(provider)(request, *args, **kwargs)

    tracking_webhook.__name__ = tracking_webhook.__qualname__ = f"{provider}_tracking_webhook"
    return tracking_webhook


# Included under /email/anymail/ by portal_reset/urls.py, with anymail's own
# paths and names (reverse("anymail:postmark_tracking_webhook")).
urlpatterns: list[URLPattern] = [
    path(f"{provider}/tracking/", _tracking_view(provider), name=f"{provider}_tracking_webhook") for provider in _VIEWS
]
