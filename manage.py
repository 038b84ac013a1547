#!/usr/bin/env python
"""Django's command-line utility. Reads .env (written by `make run`) so it talks to the running stack."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "noctis_pro.settings.local")
    from django.core.management import execute_from_command_line

    from noctis_pro.core.config import settings_or_exit

    settings_or_exit("manage.py")

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
