"""Asking for an analysis from the UI: the same rules as POST /api/v1/studies/{uid}/analyses (fastapi_app/sql.py),
from the same contract (noctis_pro.contracts.analyses): a series-scoped analyzer asked for a whole study is queued
once per image series, a study-scoped one once; an analysis that already waits is not queued twice."""

from __future__ import annotations

from django.conf import settings

from noctis_pro.ai.receivers import Wanted, analyses_queue
from noctis_pro.contracts import analyses as contract
from noctis_pro.pacs.models import Series, Study


class AnalysisRequestError(ValueError):
    """The request names an unknown analyzer or series, or a series for a study-wide analyzer."""


def analyzer_choices() -> list[tuple[str, str]]:
    """(name, scope) of every analyzer a user may ask for, sorted by name."""
    return sorted(contract.analyzer_scopes(onnx_config_paths=settings.AI_ONNX_MODELS).items())


def analysis_request(*, study: Study, analyzer: str, series_uid: str | None, requested_by: str) -> int:
    """Queue `analyzer` for the study (or one of its series); how many new pending analyses there are."""
    scope = dict(analyzer_choices()).get(analyzer)
    if scope is None:
        known = ", ".join(name for name, _ in analyzer_choices())
        raise AnalysisRequestError(f"unknown analyzer {analyzer[:64]!r} (known: {known})")
    if scope == contract.STUDY:
        if series_uid:
            raise AnalysisRequestError(f"{analyzer} analyses a whole study: leave the series out")
        wanted: list[Wanted] = [(study.pk, None, analyzer, requested_by)]
    else:
        series = Series.objects.filter(study=study).exclude(modality__in=contract.NON_IMAGE_MODALITIES)
        if series_uid:
            series = series.filter(series_instance_uid=series_uid)
        series_ids = list(series.order_by("pk").values_list("pk", flat=True))
        if not series_ids:
            what = f"image series {series_uid}" if series_uid else "image series"
            raise AnalysisRequestError(f"no {what} in study {study.study_instance_uid}")
        wanted = [(study.pk, sid, analyzer, requested_by) for sid in series_ids]
    return analyses_queue(wanted=wanted)
