"""Retention policies: which studies the archive deletes, and when."""

from __future__ import annotations

from django.db import models


class RetentionPolicy(models.Model):
    class DateBasis(models.TextChoices):
        STUDY_DATE = "study_date", "Study date"
        RECEIVED = "received_at", "Date received"

    name = models.CharField(max_length=64, unique=True)
    modality = models.CharField(max_length=16, blank=True, default="", help_text="Blank: every modality.")
    older_than_days = models.PositiveIntegerField()
    date_basis = models.CharField(max_length=16, choices=DateBasis.choices, default=DateBasis.STUDY_DATE)
    delete_reported = models.BooleanField(
        default=False, help_text="Also delete studies that have a report (the report goes with them)."
    )
    # Off until an operator has read the dry run: only enabled policies are applied by the daily task.
    enabled = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "retention_policy"
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        scope = self.modality or "any modality"
        return f"{self.name}: {scope} older than {self.older_than_days} days ({self.date_basis})"
