from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django_otp.admin import OTPAdminSite

if settings.STAFF_MFA:
    # The admin login asks for the TOTP code as well, and only a session
    # verified with it reaches any admin page.
    admin.site.__class__ = OTPAdminSite

admin.site.site_header = "Portal access resets"
admin.site.site_title = "Portal access resets"
admin.site.index_title = "Reset requests"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("requests_app.urls")),
]
