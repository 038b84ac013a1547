"""`manage.py retention`: print what the enabled policies would delete (dry run); `--apply` deletes it."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from noctis_pro.retention.models import RetentionPolicy
from noctis_pro.retention.services import retention_apply, retention_plan


class Command(BaseCommand):
    help = "List the studies the retention policies would delete now; --apply deletes them (files and index)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--apply", action="store_true", help="delete what the dry run lists")
        parser.add_argument("--policy", action="append", default=[], help="only this policy (even if disabled)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        policies = None
        if options["policy"]:
            policies = list(RetentionPolicy.objects.filter(name__in=options["policy"]))
            missing = set(options["policy"]) - {p.name for p in policies}
            if missing:
                raise CommandError(f"no such policy: {', '.join(sorted(missing))}")
        plan = retention_plan(policies=policies)
        if options["json"] and not options["apply"]:
            self.stdout.write(json.dumps([p.__dict__ for p in plan], indent=2))
            return
        for p in plan:
            self.stdout.write(
                f"{p.study_uid}  {p.study_date or '-':10}  {p.modalities:10}  {p.instances:6d} images  "
                f"{p.size_bytes / 1e6:9.1f} MB  [{p.policy}]"
            )
        total = sum(p.size_bytes for p in plan)
        self.stdout.write(f"{len(plan)} studies, {total / 1e6:.1f} MB" + ("" if options["apply"] else " (dry run)"))
        if options["apply"]:
            result = retention_apply(plan)
            if options["json"]:
                self.stdout.write(json.dumps(result.as_dict(), indent=2))
            else:
                self.stdout.write(
                    f"deleted {len(result.deleted)} studies, {result.files_removed} files, "
                    f"{result.bytes_freed / 1e6:.1f} MB freed; skipped {len(result.skipped)}"
                )
                for uid, why in result.skipped.items():
                    self.stdout.write(f"  skipped {uid}: {why}")
