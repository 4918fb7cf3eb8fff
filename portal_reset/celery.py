"""The Celery app. Settings come from Django's, under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal_reset.settings")

app = Celery("portal_reset")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes every database connection before and after
# each task unless this is set: a new PostgreSQL connection (and server
# process) per email cost about a third of the worker's time. Connections
# are kept instead, and closed as Django closes them after a web request
# (below): past CONN_MAX_AGE, or unusable after an error.
app.conf["CELERY_DB_REUSE_MAX"] = 2**31
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender: object = None, **kwargs: object) -> None:
    # Not for a task run eagerly (the tests): that runs inside the caller's
    # transaction, on the caller's connection.
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
