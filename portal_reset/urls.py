from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.urls import include, path

from requests_app.delivery_feedback import webhooks as delivery_webhooks

logger = logging.getLogger(__name__)

urlpatterns = [
    path("admin/", admin.site.urls),
    # The email provider's delivery reports (EMAIL_PROVIDER): anymail's
    # tracking webhook, e.g. /email/anymail/postmark/tracking/.
    path("email/anymail/", include((delivery_webhooks.urlpatterns, "anymail"))),
    path("", include("requests_app.urls")),
]


# The error pages. Django's own handlers are wrapped in requires_csrf_token,
# which runs the CSRF check's first half and so reads request.POST: on a
# body Django refuses to decode (a charset it does not take, too many
# fields, too large) the handler raised the same error again, then the 500
# handler did, and gunicorn answered a bare 500 with a long traceback. No
# error page has a form, so these render without the CSRF machinery and
# never touch the body; if a template itself fails, a plain page answers.


def _error_page(
    status: int, template_name: str, fallback: str, *, with_request: bool
) -> Callable[[HttpRequest, Exception | None], HttpResponse]:
    def handler(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        try:
            body = loader.get_template(template_name).render(request=request if with_request else None)
            content_type = "text/html; charset=utf-8"
        except Exception:
            logger.exception("the %s error page could not be rendered", status)
            body, content_type = fallback, "text/plain; charset=utf-8"
        return HttpResponse(body, status=status, content_type=content_type)

    handler.__name__ = handler.__qualname__ = f"error_{status}"
    return handler


# 400 and 500 render with no request: the request may be what is wrong (a
# disallowed Host, a broken body) and those pages must not depend on it.
handler400 = _error_page(400, "400.html", "Bad request.\n", with_request=False)
handler403 = _error_page(403, "403.html", "Forbidden.\n", with_request=True)
handler404 = _error_page(404, "404.html", "Not found.\n", with_request=True)
handler500 = _error_page(500, "500.html", "Server error.\n", with_request=False)
