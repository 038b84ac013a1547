"""Admin: AI analyses (results read-only; an operator may requeue by setting the status back to pending)."""

from django.contrib import admin

from noctis_pro.ai.models import AIAnalysis


@admin.register(AIAnalysis)
class AIAnalysisAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "analyzer",
        "study",
        "status",
        "attempts",
        "max_attempts",
        "worker",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "analyzer")
    list_select_related = ("study",)
    search_fields = ("study__study_instance_uid", "analyzer", "worker")
    raw_id_fields = ("study", "series")
    readonly_fields = ("worker", "attempts", "result", "error", "created_at", "started_at", "finished_at")
