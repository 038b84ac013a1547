"""AI analyses: one row per (study or series, analyzer), taken by `process_ai_analyses` with SKIP LOCKED."""

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
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "ai_analysis"
        indexes = [
            models.Index(fields=["created_at"], condition=Q(status="pending"), name="analysis_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.analyzer} on {self.study_id} ({self.status})"
