from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class RequestsAppConfig(AppConfig):
    default = True
    name = "requests_app"
    verbose_name = "Portal access resets"

    def ready(self) -> None:
        # The outbox publishes its task by name (outbox/publish.py): the task
        # must be registered in every process, the web server's included.
        from . import tasks  # noqa: F401


class StaffAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site (TOTP when STAFF_MFA is on)."""

    default = False  # requests_app's own config is RequestsAppConfig
    default_site = "portal_reset.admin_site.StaffAdminSite"
