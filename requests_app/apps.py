from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class RequestsAppConfig(AppConfig):
    default = True
    name = "requests_app"
    verbose_name = "Portal access resets"
    default_auto_field = "django.db.models.BigAutoField"


class StaffAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site (TOTP when STAFF_MFA is on)."""

    default = False  # requests_app's own config is RequestsAppConfig
    default_site = "requests_app.admin_site.StaffAdminSite"
