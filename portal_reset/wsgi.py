"""The WSGI application, for gunicorn (gunicorn.conf.py).

Loading it also loads the URL configuration and every view module it
imports, which Django would otherwise do on each worker's first request:
under gunicorn's ``preload_app`` that happens once, in the master, and a
worker (a new one every ~1,000 requests) starts ready. Nothing here opens a
connection to the database, the cache or the broker: a forked worker must
not share one with the master (tests/test_wsgi_preload.py).
"""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal_reset.settings")

application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - imported for its side effect: the URLconf's modules
