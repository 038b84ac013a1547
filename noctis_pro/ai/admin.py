"""Admin: AI analyses (results read-only; an operator may requeue by setting the status back to pending) and the
rules that queue analyses when images arrive."""

from django.contrib import admin

from noctis_pro.ai.models import AIAnalysis, AnalysisRule


@admin.register(AIAnalysis)
class AIAnalysisAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "analyzer",
        "study",
        "series",
        "status",
        "attempts",
        "max_attempts",
        "duration_ms",
        "requested_by",
        "worker",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "analyzer")
    list_select_related = ("study", "series")
    search_fields = ("study__study_instance_uid", "analyzer", "worker", "requested_by")
    raw_id_fields = ("study", "series")
    readonly_fields = (
        "worker",
        "attempts",
        "result",
        "error",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "duration_ms",
    )


@admin.register(AnalysisRule)
class AnalysisRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "analyzer", "modality", "body_part", "sop_class_uid", "calling_ae", "enabled")
    list_editable = ("enabled",)
    list_filter = ("enabled", "analyzer", "modality")
    search_fields = ("name", "analyzer", "calling_ae")
