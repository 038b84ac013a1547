"""Read queries of the archive for the UI. Feature apps read pacs through these functions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Case, Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.expressions import OrderBy
from django.db.models.functions import Upper

from noctis_pro.contracts.roles import RADIOLOGIST
from noctis_pro.facilities.access import study_visibility_q
from noctis_pro.pacs import lookups  # noqa: F401  (registers __like)
from noctis_pro.pacs.models import Instance, Series, Study, StudyPriority, StudyStatus

_PRIORITY_RANK = Case(
    When(priority=StudyPriority.STAT, then=Value(0)),
    When(priority=StudyPriority.URGENT, then=Value(1)),
    default=Value(2),
)
_STATUS_RANK = Case(
    *(When(status=status, then=Value(rank)) for rank, status in enumerate(StudyStatus)),
    default=Value(9),
)
# Every worklist column that sorts, by the key the page sends (`-key` descends). Ties break on the newest study.
SORT_COLUMNS: dict[str, tuple[Any, ...]] = {
    "patient_name": (F("patient__patient_name"),),
    "patient_id": (F("patient__patient_id"),),
    "study_date": (F("study_date"), F("study_time")),
    "modality": (F("modalities_in_study"),),
    "description": (F("study_description"),),
    "accession": (F("accession_number"),),
    "series": (F("number_of_series"),),
    "images": (F("number_of_instances"),),
    "received_at": (F("received_at"),),
    "status": (_STATUS_RANK,),
    "priority": (_PRIORITY_RANK,),
    "assigned": (F("assigned_to__username"),),
}


def _ordering(key: str) -> tuple[OrderBy, ...]:
    column = SORT_COLUMNS[key.lstrip("-")]
    if key.startswith("-"):
        return (*(c.desc(nulls_last=True) for c in column), F("pk").desc())
    return (*(c.asc(nulls_last=True) for c in column), F("pk").desc())


ORDERINGS: dict[str, tuple[OrderBy, ...]] = {
    f"{sign}{key}": _ordering(f"{sign}{key}") for key in SORT_COLUMNS for sign in ("", "-")
}
DEFAULT_ORDERING = "-study_date"


@dataclass(frozen=True)
class WorklistFilters:
    patient_name: str = ""
    patient_id: str = ""
    patient_query: str = ""  # the search box: part of the name, or the exact patient ID
    accession_number: str = ""
    modality: str = ""
    body_part: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    status: str = ""  # a StudyStatus value
    priority: str = ""  # a StudyPriority value
    assigned_to_id: int | None = None
    unassigned: bool = False
    ordering: str = DEFAULT_ORDERING

    @property
    def is_empty(self) -> bool:
        return not (
            self.patient_name
            or self.patient_id
            or self.patient_query
            or self.accession_number
            or self.modality
            or self.body_part
            or self.date_from
            or self.date_to
            or self.status
            or self.priority
            or self.assigned_to_id
            or self.unassigned
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
    if filters.patient_query:
        qs = qs.annotate(patient_q_upper=Upper("patient__patient_name")).filter(
            Q(patient_q_upper__like=like_pattern(filters.patient_query))
            | Q(patient__patient_id=filters.patient_query.strip())
        )
    if filters.patient_id.strip():
        qs = qs.filter(patient__patient_id=filters.patient_id.strip())
    if filters.accession_number.strip():
        qs = qs.filter(accession_number=filters.accession_number.strip())
    if filters.modality.strip():
        modality = filters.modality.strip().upper()
        qs = qs.filter(Exists(Series.objects.filter(study=OuterRef("pk"), modality=modality)))
    if filters.body_part.strip():
        body_part = filters.body_part.strip().upper()
        qs = qs.filter(Exists(Series.objects.filter(study=OuterRef("pk"), body_part_examined__iexact=body_part)))
    if filters.date_from:
        qs = qs.filter(study_date__gte=filters.date_from)
    if filters.date_to:
        qs = qs.filter(study_date__lte=filters.date_to)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.priority:
        qs = qs.filter(priority=filters.priority)
    if filters.assigned_to_id is not None:
        qs = qs.filter(assigned_to_id=filters.assigned_to_id)
    if filters.unassigned:
        qs = qs.filter(assigned_to__isnull=True)
    ordering = ORDERINGS.get(filters.ordering, ORDERINGS[DEFAULT_ORDERING])
    return qs.order_by(*ordering)


def worklist_status_counts(*, user: AbstractBaseUser | AnonymousUser, filters: WorklistFilters) -> dict[str, int]:
    """How many studies match `filters` in each status (the status filter itself left out), and "all"."""
    qs = studies_for_worklist(user=user, filters=replace(filters, status=""))
    counts = {status.value: 0 for status in StudyStatus}
    for status, n in qs.order_by().values_list("status").annotate(n=Count("pk")):
        counts[status] = n
    counts["all"] = sum(counts.values())
    return counts


def worklist_readers() -> QuerySet[Any]:
    """Users a study can be assigned to (radiologists), for the assignee filter."""
    from django.contrib.auth import get_user_model

    return (
        get_user_model()
        .objects.filter(is_active=True, groups__name=RADIOLOGIST)
        .order_by("username")
        .values("pk", "username")
    )


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
