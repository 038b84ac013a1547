"""Admin: reports, read-only (they are written from the study page, where the draft/final rule applies)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from noctis_pro.reports.models import Report


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ("study", "status", "author", "finalized_by", "updated_at", "finalized_at")
    list_filter = ("status",)
    list_select_related = ("study", "author", "finalized_by")
    search_fields = ("study__study_instance_uid", "text")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
