"""The project's settings plus the floor (bench/floor/): used only by the
benchmark's processes (DJANGO_SETTINGS_MODULE=bench.settings), so production
never has the floor's URL, app or table."""

from portal_reset.settings import *  # noqa: F403
from portal_reset.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.floor"]
ROOT_URLCONF = "bench.urls"
