"""`manage.py storage_verify [--study UID]`: check every stored file against its recorded size and digest.

Prints each instance whose file is missing, has another size or other content, then a summary. Exit status 1
when any file is not what was stored (for a cron job or a monitoring check), 0 otherwise. Reads every file:
on a large archive, run it off-peak or per study.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from noctis_pro.pacs.integrity import files_verify
from noctis_pro.pacs.models import Instance


class Command(BaseCommand):
    help = "Check the stored files against their recorded sizes and digests (exit status 1 on any problem)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--study", metavar="STUDY_INSTANCE_UID", help="only this study's instances")

    def handle(self, *args: Any, **options: Any) -> None:
        instances = Instance.objects.only("sop_instance_uid", "path", "size_bytes", "digest").order_by("id")
        if options["study"]:
            instances = instances.filter(series__study__study_instance_uid=options["study"])
        checked = problems = 0
        for problem in files_verify(settings.STORAGE_ROOT, instances.iterator(chunk_size=2000)):
            checked += 1
            if problem:
                problems += 1
                self.stdout.write(f"{problem.sop_instance_uid}  {problem.path}: {problem.reason}")
        summary = f"{checked} instance file(s) checked, {problems} not as stored"
        if problems:
            raise CommandError(summary)
        self.stdout.write(summary)
