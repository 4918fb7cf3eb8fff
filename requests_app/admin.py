from django.contrib import admin

from .models import ResetRequest

admin.site.register(ResetRequest)
