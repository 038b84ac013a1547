from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from noctis_pro.retention.models import RetentionPolicy
from noctis_pro.retention.services import retention_plan


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "modality", "older_than_days", "date_basis", "delete_reported", "enabled")
    list_filter = ("enabled", "date_basis")
    actions = ("dry_run",)

    @admin.action(description="Dry run: list what the selected policies would delete now")
    def dry_run(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        plan = retention_plan(policies=list(queryset))
        total = sum(p.size_bytes for p in plan)
        self.message_user(request, f"{len(plan)} studies, {total / 1e6:.1f} MB would be deleted.", messages.INFO)
        for p in plan[:50]:
            self.message_user(
                request, f"{p.study_uid} · {p.study_date or '-'} · {p.modalities} · {p.instances} images", messages.INFO
            )
