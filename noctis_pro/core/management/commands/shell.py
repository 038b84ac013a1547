"""`manage.py shell`, quiet when scripted: with -c (or piped input) stdout carries only what the script prints.

Django 5.2 announces its automatic model imports on stdout even for `shell -c`, which breaks
`x=$(python manage.py shell -c "...")` in operators' scripts. Interactive sessions keep the announcement.
"""

from typing import Any

from django.core.management.commands.shell import Command as DjangoShellCommand


class Command(DjangoShellCommand):
    def handle(self, **options: Any) -> None:
        if options.get("command"):
            options = {**options, "verbosity": 0}
        super().handle(**options)
