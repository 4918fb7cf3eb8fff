"""The Celery app. Settings come from Django's, under the CELERY_ namespace."""

import os
import threading

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready

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


@worker_process_init.connect
def _renew_email_claims(**kwargs: object) -> None:
    # Each process that runs tasks (a pool process, or the worker itself with
    # the solo pool) renews the outbox claims it holds while it lives.
    from requests_app.outbox.lease import heartbeat_enable

    heartbeat_enable()


@worker_process_init.connect
def _keep_smtp_connections(**kwargs: object) -> None:
    # Each process that sends keeps its SMTP connection between batches
    # (requests_app/outbox/kept_connection.py).
    from requests_app.outbox.kept_connection import keeping_enable

    keeping_enable()


@worker_ready.connect
def _recover_emails(**kwargs: object) -> None:
    # Beside the consumer, not in its way: the second sweep waits out a
    # claim timeout (outbox/sweep.py: outbox_recover).
    threading.Thread(target=_recover_emails_now, name="outbox-recovery", daemon=True).start()


def _recover_emails_now() -> None:
    from django.db import connections

    from requests_app.outbox.sweep import outbox_recover

    try:
        outbox_recover()
    finally:
        connections.close_all()
