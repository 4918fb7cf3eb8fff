from django.apps import AppConfig


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    verbose_name = "Portal access resets"
    default_auto_field = "django.db.models.BigAutoField"
