"""The project's URLs, plus /floor/ for the benchmark's floor view."""

from django.urls import include, path

from portal_reset.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("floor/", include("bench.floor.urls")),
    *project_urlpatterns,
]
