"""AI analyses: one row per (study or series, analyzer), taken by `process_ai_analyses` with SKIP LOCKED; and the
admin-editable rules that queue analyses when images arrive."""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class AIAnalysis(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    study = models.ForeignKey("pacs.Study", on_delete=models.CASCADE, related_name="analyses")
    series = models.ForeignKey("pacs.Series", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    analyzer = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    worker = models.CharField(max_length=128, blank=True, default="")  # host:pid of the processor running it
    # Who asked: "rule:<name>", "auto" (AI_AUTO_ANALYZERS), "api:<username>". Written by fastapi_app/sql.py too.
    requested_by = models.CharField(max_length=160, blank=True, db_default="")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Refreshed every AI_HEARTBEAT_SECONDS by the processor running it: a row whose heartbeat stopped for
    # AI_STUCK_AFTER_SECONDS belongs to a dead processor, however long the analysis itself takes.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)  # of the attempt that finished it

    class Meta:
        db_table = "ai_analysis"  # fastapi_app/sql.py inserts and reads it: a rename changes both
        indexes = [
            models.Index(fields=["created_at"], condition=Q(status="pending"), name="analysis_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.analyzer} on {self.study_id} ({self.status})"


class AnalysisRule(models.Model):
    """Queue `analyzer` for arriving series that match every non-blank condition (blank matches anything)."""

    name = models.CharField(max_length=64, unique=True)
    analyzer = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True, default="", help_text="e.g. CT; blank: any")
    body_part = models.CharField(max_length=64, blank=True, default="", help_text="BodyPartExamined; blank: any")
    sop_class_uid = models.CharField(max_length=64, blank=True, default="", help_text="blank: any")
    calling_ae = models.CharField(max_length=16, blank=True, default="", help_text="the sender's AE; blank: any")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ai_analysisrule"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} → {self.analyzer}"

    def clean(self) -> None:
        from noctis_pro.ai.analyzers import registry

        if self.analyzer not in registry():
            raise ValidationError({"analyzer": f"unknown analyzer {self.analyzer!r} (known: {', '.join(registry())})"})

    def matches(self, *, modality: str, body_part: str, sop_class_uids: frozenset[str], calling_ae: str) -> bool:
        return (
            (not self.modality or self.modality.strip().upper() == modality.strip().upper())
            and (not self.body_part or self.body_part.strip().upper() == body_part.strip().upper())
            and (not self.sop_class_uid or self.sop_class_uid.strip() in sop_class_uids)
            and (not self.calling_ae or self.calling_ae.strip() == calling_ae.strip())
        )
