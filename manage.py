#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

On this machine, on the local defaults (SQLite and files under var/, no
servers): ``DEBUG=1 .venv/bin/python manage.py <command>``, or ``make run``,
``make demo``, ``make shell``. Without DEBUG=1 settings require every
production value and stop, naming those missing.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal_reset.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
