"""Admin: reports and addenda read-only (written from the report page, where the draft/sign rule applies);
templates per modality editable."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from noctis_pro.reports.models import Addendum, Report, ReportTemplate


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Report)
class ReportAdmin(_ReadOnly):
    list_display = ("study", "status", "author", "finalized_by", "updated_at", "finalized_at")
    list_filter = ("status",)
    list_select_related = ("study", "author", "finalized_by")
    search_fields = ("study__study_instance_uid", "study__accession_number", "findings", "impression")


@admin.register(Addendum)
class AddendumAdmin(_ReadOnly):
    list_display = ("report", "author", "created_at")
    search_fields = ("report__study__study_instance_uid", "text")


@admin.register(ReportTemplate)
class ReportTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "modality", "enabled")
    list_filter = ("modality", "enabled")
    search_fields = ("name", "findings", "impression")
