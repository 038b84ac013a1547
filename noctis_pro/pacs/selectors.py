"""Read queries of the archive for the UI. Feature apps read pacs through these functions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Exists, F, OuterRef, QuerySet, Subquery
from django.db.models.expressions import OrderBy
from django.db.models.functions import Upper

from noctis_pro.facilities.access import study_visibility_q
from noctis_pro.pacs import lookups  # noqa: F401  (registers __like)
from noctis_pro.pacs.models import Instance, Series, Study

ORDERINGS: dict[str, tuple[OrderBy, ...]] = {
    "-study_date": (F("study_date").desc(nulls_last=True), F("study_time").desc(nulls_last=True), F("pk").desc()),
    "study_date": (F("study_date").asc(nulls_last=True), F("study_time").asc(nulls_last=True), F("pk").asc()),
    "-received_at": (F("received_at").desc(), F("pk").desc()),
    "patient_name": (F("patient__patient_name").asc(), F("study_date").desc(nulls_last=True), F("pk").desc()),
}
DEFAULT_ORDERING = "-study_date"


@dataclass(frozen=True)
class WorklistFilters:
    patient_name: str = ""
    patient_id: str = ""
    accession_number: str = ""
    modality: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    ordering: str = DEFAULT_ORDERING

    @property
    def is_empty(self) -> bool:
        return not (
            self.patient_name
            or self.patient_id
            or self.accession_number
            or self.modality
            or self.date_from
            or self.date_to
        )


def like_pattern(term: str) -> str:
    """A user's search term as an upper-case LIKE pattern: `*` and `?` are wildcards, `%` and `_` literal.

    Without a wildcard the term matches anywhere in the value (what people expect from a search box).
    """
    escaped = term.strip().upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if "*" in escaped or "?" in escaped:
        return escaped.replace("*", "%").replace("?", "_")
    return f"%{escaped}%"


def studies_for_worklist(*, user: AbstractBaseUser | AnonymousUser, filters: WorklistFilters) -> QuerySet[Study]:
    """Studies matching `filters`, with their patient and a thumbnail series uid (or None), ordered.

    Only the studies of the user's facilities (contracts.access, the one rule).
    """
    thumb = (
        Series.objects.filter(study=OuterRef("pk"))
        .exclude(thumbnail="")
        .order_by("series_number", "pk")
        .values("series_instance_uid")[:1]
    )
    qs = (
        Study.objects.select_related("patient", "assigned_to")
        .filter(study_visibility_q(user))
        .annotate(thumbnail_series_uid=Subquery(thumb))
    )
    if filters.patient_name.strip():
        qs = qs.annotate(patient_name_upper=Upper("patient__patient_name")).filter(
            patient_name_upper__like=like_pattern(filters.patient_name)
        )
    if filters.patient_id.strip():
        qs = qs.filter(patient__patient_id=filters.patient_id.strip())
    if filters.accession_number.strip():
        qs = qs.filter(accession_number=filters.accession_number.strip())
    if filters.modality.strip():
        modality = filters.modality.strip().upper()
        qs = qs.filter(Exists(Series.objects.filter(study=OuterRef("pk"), modality=modality)))
    if filters.date_from:
        qs = qs.filter(study_date__gte=filters.date_from)
    if filters.date_to:
        qs = qs.filter(study_date__lte=filters.date_to)
    ordering = ORDERINGS.get(filters.ordering, ORDERINGS[DEFAULT_ORDERING])
    return qs.order_by(*ordering)


def study_for_worklist_row(*, user: AbstractBaseUser | AnonymousUser, study_uid: str) -> Study | None:
    return studies_for_worklist(user=user, filters=WorklistFilters()).filter(study_instance_uid=study_uid).first()


def series_thumbnail_path(*, user: AbstractBaseUser | AnonymousUser, series_uid: str) -> str | None:
    """The thumbnail's path relative to MEDIA_ROOT, or None when the series has none (yet) or is not visible."""
    relpath = (
        Series.objects.filter(study_visibility_q(user, prefix="study__"), series_instance_uid=series_uid)
        .values_list("thumbnail", flat=True)
        .first()
    )
    return relpath or None


def study_inventory_rows(
    *, study_id: int, series_id: int | None = None
) -> tuple[list[dict[str, Any]], list[tuple[int, int | None]]]:
    """The series of a study (or one series) and their instances' (series id, instance number): two queries."""
    series = Series.objects.filter(study_id=study_id)
    if series_id is not None:
        series = series.filter(pk=series_id)
    series_rows = list(
        series.order_by("series_number", "pk").values(
            "id", "series_instance_uid", "series_number", "modality", "series_description", "number_of_instances"
        )
    )
    instance_rows = list(
        Instance.objects.filter(series_id__in=[s["id"] for s in series_rows]).values_list(
            "series_id", "instance_number"
        )
    )
    return series_rows, instance_rows


def study_detail(*, user: AbstractBaseUser | AnonymousUser, study_uid: str) -> Study | None:
    """A study with its patient and its series (ordered by number), or None."""
    study = (
        Study.objects.select_related("patient", "assigned_to")
        .filter(study_visibility_q(user), study_instance_uid=study_uid)
        .first()
    )
    if study is not None:
        study.series_list = list(study.series.order_by(F("series_number").asc(nulls_last=True), "pk"))
    return study
