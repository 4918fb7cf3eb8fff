from django.urls import path

from . import views

app_name = "requests_app"

urlpatterns = [
    path("", views.guide, name="guide"),
    path("reset/", views.reset_request, name="reset"),
    path("reset/submitted/<str:reference>/", views.submitted, name="submitted"),
    path("status/<str:token>/", views.status, name="status"),
    path("healthz", views.healthz, name="healthz"),
]
