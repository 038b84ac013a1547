"""`manage.py ensure_admin --username admin [--reset]`: the superuser `make run` needs, idempotently.

The password comes from NOCTIS_ADMIN_PASSWORD (required, never printed).
"""

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from noctis_pro.accounts.services import admin_ensure


class Command(BaseCommand):
    help = "Create the superuser if missing (password from NOCTIS_ADMIN_PASSWORD); --reset sets it again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")
        parser.add_argument("--reset", action="store_true", help="set the password of an existing user")

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("NOCTIS_ADMIN_PASSWORD", "")
        if not password:
            raise CommandError("NOCTIS_ADMIN_PASSWORD is not set: it has no default")
        outcome = admin_ensure(
            username=options["username"], password=password, email=options["email"], reset=options["reset"]
        )
        messages = {
            "created": "created superuser {u}",
            "reset": "password of {u} set",
            "exists": "user {u} exists (unchanged; --reset sets the password)",
        }
        self.stdout.write(messages[outcome].format(u=options["username"]))
