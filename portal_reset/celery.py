"""The Celery app. Settings come from Django's, under the CELERY_ namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal_reset.settings")

app = Celery("portal_reset")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
