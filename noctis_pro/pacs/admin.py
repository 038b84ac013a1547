"""Admin views of the index (read-only: pacs.indexing is the only writer of those rows), and of the DICOM nodes
and forwarding rules (edited here)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from noctis_pro.pacs.models import ForwardRule, Instance, Node, Patient, Receipt, Series, Study, Transfer


class ReadOnlyAdmin(admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False  # COUNT(*) over a million instances on every page is wasteful

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ("patient_name", "patient_id", "issuer_of_patient_id", "birth_date", "sex", "updated_at")
    search_fields = ("patient_name", "patient_id")


@admin.register(Study)
class StudyAdmin(ReadOnlyAdmin):
    list_display = (
        "study_instance_uid",
        "patient",
        "study_date",
        "modalities_in_study",
        "accession_number",
        "number_of_series",
        "number_of_instances",
        "received_at",
    )
    list_select_related = ("patient",)
    search_fields = ("study_instance_uid", "accession_number", "patient__patient_id")
    date_hierarchy = "study_date"


@admin.register(Series)
class SeriesAdmin(ReadOnlyAdmin):
    list_display = (
        "series_instance_uid",
        "study",
        "modality",
        "series_number",
        "series_description",
        "number_of_instances",
    )
    list_select_related = ("study",)
    list_filter = ("modality",)
    search_fields = ("series_instance_uid", "study__study_instance_uid")


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = ("sop_instance_uid", "series", "instance_number", "transfer_syntax_uid", "size_bytes", "received_at")
    list_select_related = ("series",)
    search_fields = ("sop_instance_uid", "series__series_instance_uid")


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyAdmin):
    list_display = (
        "pk",
        "sop_instance_uid",
        "source",
        "calling_ae",
        "received_at",
        "indexed_at",
        "index_attempts",
        "index_error",
    )
    list_filter = ("source", "calling_ae")
    search_fields = ("sop_instance_uid", "study_instance_uid", "series_instance_uid")


class ForwardRuleInline(admin.TabularInline):
    model = ForwardRule
    extra = 0


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("name", "ae_title", "host", "port", "enabled", "may_store", "may_query", "may_retrieve",
                    "may_receive", "last_success_at", "last_error")  # fmt: skip
    list_filter = ("enabled", "may_receive")
    search_fields = ("name", "ae_title", "host")
    readonly_fields = ("last_success_at", "last_error", "created_at")
    inlines = [ForwardRuleInline]


@admin.register(ForwardRule)
class ForwardRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "node", "modality", "calling_ae", "enabled")
    list_filter = ("enabled", "node")
    list_select_related = ("node",)


@admin.register(Transfer)
class TransferAdmin(admin.ModelAdmin):
    """Read-only: transfers are written by the Celery tasks (pacs.transfers)."""

    list_display = ("created_at", "kind", "node_name", "study_instance_uid", "status", "completed", "failed", "total",
                    "attempts")  # fmt: skip
    list_filter = ("status", "kind", "node_name")
    search_fields = ("study_instance_uid", "node_name")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
