"""Read queries of the AI app: analyses for the UI, and the study/series/instance facts analyzers and rules read."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from noctis_pro.ai.analyzers.base import InstanceRef, SeriesFacts, SeriesRef
from noctis_pro.ai.models import AIAnalysis
from noctis_pro.contracts.analysis_summaries import StudyAIStatus
from noctis_pro.pacs.models import Instance, Series, Study


def analyses_for_study(*, study_id: int, limit: int = 20) -> QuerySet[AIAnalysis]:
    return AIAnalysis.objects.filter(study_id=study_id).select_related("series").order_by("-created_at", "-pk")[:limit]


def ai_status_for_studies(*, study_ids: list[int]) -> dict[int, StudyAIStatus]:
    """The worklist's AI badge for a page of studies, in one query: the newest analysis per (study, series,
    analyzer), so a re-run replaces the earlier outcome instead of adding to it. Studies without analyses are
    left out."""
    out: dict[int, StudyAIStatus] = {}
    if not study_ids:
        return out
    rows = (
        AIAnalysis.objects.filter(study_id__in=study_ids)
        .order_by("study_id", "analyzer", "series_id", "-created_at", "-pk")
        .distinct("study_id", "analyzer", "series_id")
        .values_list("study_id", "analyzer", "status", "result", "error", "series__series_number")
    )
    for study_id, analyzer, status, result, error, series_number in rows:
        out.setdefault(study_id, StudyAIStatus()).add(
            analyzer=analyzer, status=status, result=result, error=error, series_number=series_number
        )
    return out


def study_counts(*, study_id: int) -> tuple[int, int]:
    """(number_of_series, number_of_instances) as the index derived them."""
    return Study.objects.values_list("number_of_series", "number_of_instances").get(pk=study_id)


def series_refs(*, study_id: int, series_id: int | None = None) -> list[SeriesRef]:
    """The series of a study (or the one series) with their instances ordered by number: two queries."""
    series = Series.objects.filter(study_id=study_id)
    if series_id is not None:
        series = series.filter(pk=series_id)
    series_rows = list(
        series.order_by("series_number", "pk").values_list(
            "id", "series_instance_uid", "modality", "body_part_examined", "series_number"
        )
    )
    instances: dict[int, list[InstanceRef]] = defaultdict(list)
    root = Path(settings.STORAGE_ROOT)
    rows = (
        Instance.objects.filter(series_id__in=[r[0] for r in series_rows])
        .order_by("series_id", "instance_number", "pk")
        .values_list("series_id", "sop_instance_uid", "sop_class_uid", "instance_number", "path", "attrs")
    )
    for sid, sop_uid, sop_class, number, path, attrs in rows:
        instances[sid].append(InstanceRef(sop_uid, sop_class, number, root / path, attrs or {}))
    return [SeriesRef(sid, uid, mod, body, number, instances[sid]) for sid, uid, mod, body, number in series_rows]


def series_facts(*, series_ids: set[int]) -> dict[int, tuple[int, SeriesFacts]]:
    """Series id -> (study id, the facts rules match on: modality, body part, SOP classes, the study's calling AE)."""
    if not series_ids:
        return {}
    classes: dict[int, set[str]] = defaultdict(set)
    for sid, sop_class in (
        Instance.objects.filter(series_id__in=series_ids).values_list("series_id", "sop_class_uid").distinct()
    ):
        classes[sid].add(sop_class)
    out = {}
    for sid, study_id, modality, body, calling_ae in Series.objects.filter(pk__in=series_ids).values_list(
        "id", "study_id", "modality", "body_part_examined", "study__calling_ae"
    ):
        out[sid] = (study_id, SeriesFacts(modality, body, frozenset(classes[sid]), calling_ae))
    return out


def series_of_studies(*, study_ids: set[int]) -> set[int]:
    return set(Series.objects.filter(study_id__in=study_ids).values_list("id", flat=True))
