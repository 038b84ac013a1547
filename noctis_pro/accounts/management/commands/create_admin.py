"""`manage.py create_admin`: the same as `ensure_admin` (kept for scripts that use the older name)."""

from noctis_pro.accounts.management.commands.ensure_admin import Command as EnsureAdminCommand


class Command(EnsureAdminCommand):
    pass
