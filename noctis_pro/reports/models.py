"""Radiology reports: one per study, a draft until a radiologist finalizes it; a final report never changes."""

from django.conf import settings
from django.db import models


class Report(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        FINAL = "final"

    study = models.OneToOneField("pacs.Study", on_delete=models.CASCADE, related_name="report")
    text = models.TextField(blank=True, default="")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    finalized_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finalized_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "reports_report"
        indexes = [models.Index(fields=["status", "-updated_at"], name="report_status_updated")]

    def __str__(self) -> str:
        return f"report {self.study_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status == self.Status.FINAL
