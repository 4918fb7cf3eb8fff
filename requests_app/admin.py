from django.contrib import admin  # noqa: F401  (the staff admin is written next)
