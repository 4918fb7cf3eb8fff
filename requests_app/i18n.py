"""Which language a page is in: English or Spanish for patients, English for staff.

Patients get the language their browser asks for (Accept-Language), until they
pick one with the switch on every patient page: a plain link to the same page
with ``?lang=es`` (or ``en``). Plain links, not a form: the confirmation page
must carry no CSRF token (it is the same for every submission but the
reference), and the Content-Security-Policy allows no inline script to submit
a form on change. The choice is kept in Django's language cookie.
"""

from __future__ import annotations

from typing import Literal, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.middleware.locale import LocaleMiddleware
from django.urls import reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme

SWITCH_PARAMETER = "lang"
STAFF_LANGUAGE = "en"


class PatientLocaleMiddleware(LocaleMiddleware):
    """Django's LocaleMiddleware, plus: staff pages (the admin) are always
    English, whatever the browser asks for; and ``?lang=<code>`` on a patient
    page stores that choice and redirects to the page without it."""

    # Django's middleware may answer from process_request; the stubs of
    # LocaleMiddleware say it never does, which is true of Django's own only.
    def process_request(self, request: HttpRequest) -> HttpResponse | None:  # type: ignore[override]
        if request.path.startswith(reverse("admin:index")):
            translation.activate(STAFF_LANGUAGE)
            request.LANGUAGE_CODE = translation.get_language()
            return None
        if request.method in ("GET", "HEAD") and SWITCH_PARAMETER in request.GET:
            return self._switch(request)
        super().process_request(request)
        return None

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response = super().process_response(request, response)
        # The language cookie chooses the page's language as much as
        # Accept-Language does: a shared cache must keep them apart.
        patch_vary_headers(response, ("Cookie",))
        return response

    def _switch(self, request: HttpRequest) -> HttpResponse:
        """Redirect to the same page without ``?lang=``, in that language
        from now on. An unknown code changes nothing."""
        code = request.GET[SWITCH_PARAMETER]
        others = request.GET.copy()
        del others[SWITCH_PARAMETER]
        target = request.path + (f"?{others.urlencode()}" if others else "")
        # request.path is the client's own: "//elsewhere.example/" would
        # make this an open redirect.
        if not url_has_allowed_host_and_scheme(target, allowed_hosts=None, require_https=False):
            target = "/"
        response = HttpResponseRedirect(target)
        response.status_code = 303
        if code in dict(settings.LANGUAGES):
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                code,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                path=settings.LANGUAGE_COOKIE_PATH,
                domain=settings.LANGUAGE_COOKIE_DOMAIN,
                secure=settings.LANGUAGE_COOKIE_SECURE or request.is_secure(),
                httponly=True,  # no script of ours reads it
                samesite=cast(Literal["Lax", "Strict", "None"], settings.LANGUAGE_COOKIE_SAMESITE),
            )
        return response
