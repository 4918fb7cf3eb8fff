from django.urls import path

from . import views

app_name = "bench_floor"

urlpatterns = [
    path("", views.floor_form, name="form"),
    path("done/<int:pk>/", views.floor_done, name="done"),
]
