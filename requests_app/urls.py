from django.urls import path

from .views import guide, health, reset, status

app_name = "requests_app"

urlpatterns = [
    path("", guide.guide, name="guide"),
    path("reset/", reset.reset_request, name="reset"),
    path("reset/submitted/<str:reference>/", status.submitted, name="submitted"),
    path("status/<str:token>/", status.status, name="status"),
    path("healthz", health.healthz, name="healthz"),
]
