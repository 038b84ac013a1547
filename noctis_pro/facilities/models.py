"""Facilities (hospitals, clinics, sites), the AE titles that send for each, and the users who work there.

The rule of who sees what is noctis_pro.contracts.access; pacs_study.facility_id is set at indexing from the
receipt's calling AE (facilities.receivers). fastapi_app/sql.py reads these tables.
"""

from django.conf import settings
from django.db import models


class Facility(models.Model):
    name = models.CharField(max_length=128, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="facilities", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "facilities_facility"
        verbose_name_plural = "facilities"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FacilityAE(models.Model):
    """A sending AE title (the calling AE of a C-STORE) and the facility its studies belong to."""

    ae_title = models.CharField(max_length=16, unique=True, help_text="calling AE title, as the modality sends it")
    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="ae_titles")

    class Meta:
        db_table = "facilities_facilityae"
        verbose_name = "sending AE title"

    def __str__(self) -> str:
        return f"{self.ae_title} -> {self.facility}"

    def save(self, *args: object, **kwargs: object) -> None:
        self.ae_title = self.ae_title.strip()
        super().save(*args, **kwargs)  # type: ignore[arg-type]
