"""An anonymised export: a ZIP of de-identified DICOM files, built by a Celery task, downloadable until it expires."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from noctis_pro.contracts import exports as exports_contract


class Export(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # unguessable in download URLs
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exports")
    study_uids = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    instances_total = models.PositiveIntegerField(default=0)
    instances_done = models.PositiveIntegerField(default=0)
    instances_skipped = models.PositiveIntegerField(default=0)  # burned-in annotation, unreadable files
    size_bytes = models.BigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "exports_export"  # fastapi_app/sql.py reads and inserts here
        indexes = [models.Index(fields=["requested_by", "-created_at"], name="export_user_recent")]

    def __str__(self) -> str:
        return f"export {self.id} ({self.status})"

    @property
    def filename(self) -> str:
        return exports_contract.download_name(self.id)

    @property
    def progress_percent(self) -> int:
        if not self.instances_total:
            return 100 if self.status == self.Status.DONE else 0
        return int(100 * (self.instances_done + self.instances_skipped) / self.instances_total)
