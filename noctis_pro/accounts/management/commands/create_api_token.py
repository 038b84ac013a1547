"""`manage.py create_api_token USERNAME [--name N]`: prints only the new raw token (shown once)."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from noctis_pro.accounts.services import api_token_create


class Command(BaseCommand):
    help = "Issue an API token for USERNAME and print it (only its sha256 is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label to tell tokens apart")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"unknown user {options['username']!r}")
        self.stdout.write(api_token_create(user=user, name=options["name"]))
