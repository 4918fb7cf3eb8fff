from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Portal access resets"
admin.site.site_title = "Portal access resets"
admin.site.index_title = "Reset requests"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("requests_app.urls")),
]
