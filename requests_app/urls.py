from django.urls import path

from .views import guide, health, reset, status

app_name = "requests_app"

urlpatterns = [
    path("", guide.guide, name="guide"),
    path("help/<slug:slug>/", guide.help_step, name="help_step"),
    path("help/<str:slug>/feedback/", guide.help_feedback, name="help_feedback"),
    path("help/<slug:slug>/solved/", guide.help_solved, name="help_solved"),
    path("help/<slug:slug>/not-solved/", guide.help_not_solved, name="help_not_solved"),
    path("reset/", reset.reset_request, name="reset"),
    path("reset/submitted/<str:reference>/", status.submitted, name="submitted"),
    path("status/<str:token>/", status.status, name="status"),
    path("status/<str:token>/withdraw/", status.status_withdraw, name="status_withdraw"),
    path("healthz", health.healthz, name="healthz"),
]
