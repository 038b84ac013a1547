"""Radiology reports: one per study, findings and impression, a draft until a radiologist signs it. A signed report
never changes; later corrections are addenda. Templates per modality prefill a new draft."""

from django.conf import settings
from django.db import models


class Report(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        FINAL = "final"  # signed

    study = models.OneToOneField("pacs.Study", on_delete=models.CASCADE, related_name="report")
    findings = models.TextField(blank=True, default="")
    impression = models.TextField(blank=True, default="")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    finalized_by = models.ForeignKey(  # who signed
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finalized_at = models.DateTimeField(null=True, blank=True)  # when signed

    class Meta:
        db_table = "reports_report"
        indexes = [models.Index(fields=["status", "-updated_at"], name="report_status_updated")]

    def __str__(self) -> str:
        return f"report {self.study_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status == self.Status.FINAL


class Addendum(models.Model):
    """A correction or addition to a signed report; itself immutable once written."""

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="addenda")
    text = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "reports_addendum"
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"addendum {self.pk} to {self.report_id}"


class ReportTemplate(models.Model):
    """Text a new report starts from, chosen by the study's modality (blank modality: any)."""

    name = models.CharField(max_length=100, unique=True)
    modality = models.CharField(max_length=16, blank=True, default="", help_text="e.g. CT; blank for any")
    findings = models.TextField(blank=True, default="")
    impression = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=True)

    class Meta:
        db_table = "reports_template"
        ordering = ["modality", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.modality or 'any'})"
