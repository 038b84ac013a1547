"""Queue analyses when studies change: one pending row per (study, analyzer in AI_AUTO_ANALYZERS)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from noctis_pro.ai.models import AIAnalysis


def analyses_queue_for_studies(*, study_ids: set[int], analyzers: list[str]) -> int:
    """Create pending analyses, skipping (study, analyzer) pairs that already wait: a burst of batches queues one."""
    if not study_ids or not analyzers:
        return 0
    waiting = set(
        AIAnalysis.objects.filter(
            study_id__in=study_ids, analyzer__in=analyzers, status=AIAnalysis.Status.PENDING
        ).values_list("study_id", "analyzer")
    )
    rows = [
        AIAnalysis(study_id=study_id, analyzer=analyzer)
        for study_id in sorted(study_ids)
        for analyzer in analyzers
        if (study_id, analyzer) not in waiting
    ]
    AIAnalysis.objects.bulk_create(rows)
    return len(rows)


def on_studies_indexed(sender: Any, *, study_ids: set[int], **kwargs: Any) -> None:
    analyses_queue_for_studies(study_ids=study_ids, analyzers=list(settings.AI_AUTO_ANALYZERS))
