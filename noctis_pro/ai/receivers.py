"""Queue analyses when images arrive: by the enabled AnalysisRules, and AI_AUTO_ANALYZERS for every study.

A study-scoped analyzer gets one pending row per study, a series-scoped one a row per arriving series it
`applies_to`. A (study, series, analyzer) that already waits is not queued twice, so a study arriving in a burst of
webhook batches is analysed once (the processor waits until the study is quiet).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from noctis_pro.ai.analyzers import registry
from noctis_pro.ai.analyzers.base import SeriesFacts
from noctis_pro.ai.models import AIAnalysis, AnalysisRule
from noctis_pro.ai.selectors import series_facts, series_of_studies

Wanted = tuple[int, int | None, str, str]  # study id, series id (None: study scope), analyzer, requested_by


def analyses_wanted(
    *, facts: dict[int, tuple[int, SeriesFacts]], rules: list[AnalysisRule], auto: list[str]
) -> list[Wanted]:
    """Which analyses the arriving series call for. Pure apart from the registry lookup."""
    known = registry()
    wanted: dict[tuple[int, int | None, str], str] = {}
    for series_id, (study_id, f) in sorted(facts.items()):
        asked = [(name, "auto") for name in auto]
        asked += [
            (rule.analyzer, f"rule:{rule.name}")
            for rule in rules
            if rule.matches(
                modality=f.modality, body_part=f.body_part, sop_class_uids=f.sop_class_uids, calling_ae=f.calling_ae
            )
        ]
        for name, requested_by in asked:
            analyzer = known.get(name)
            if analyzer is None:
                continue
            if not analyzer.applies_to(f):  # a study-scoped one too: dose runs when CT or a dose SR arrives
                continue
            study_scope = analyzer.scope == "study"
            wanted.setdefault((study_id, None if study_scope else series_id, name), requested_by)
    return [(study, series, name, by) for (study, series, name), by in wanted.items()]


def analyses_queue(*, wanted: list[Wanted]) -> int:
    """Create the pending analyses, skipping those that already wait."""
    if not wanted:
        return 0
    waiting = set(
        AIAnalysis.objects.filter(
            study_id__in={w[0] for w in wanted},
            analyzer__in={w[2] for w in wanted},
            status=AIAnalysis.Status.PENDING,
        ).values_list("study_id", "series_id", "analyzer")
    )
    rows = [
        AIAnalysis(study_id=study, series_id=series, analyzer=name, requested_by=by)
        for study, series, name, by in wanted
        if (study, series, name) not in waiting
    ]
    AIAnalysis.objects.bulk_create(rows)
    return len(rows)


def analyses_queue_for_studies(*, study_ids: set[int], analyzers: list[str]) -> int:
    """Queue `analyzers` for every series of the studies (AI_AUTO_ANALYZERS' behaviour; used by tests and tools)."""
    facts = series_facts(series_ids=series_of_studies(study_ids=study_ids))
    return analyses_queue(wanted=analyses_wanted(facts=facts, rules=[], auto=analyzers))


def on_studies_indexed(sender: Any, *, study_ids: set[int], series_ids: set[int] | None = None, **kwargs: Any) -> None:
    rules = list(AnalysisRule.objects.filter(enabled=True))
    auto = list(settings.AI_AUTO_ANALYZERS)
    if not rules and not auto:
        return
    known = registry()
    if not rules and all(getattr(known.get(name), "scope", "") == "study" for name in auto):
        # The common case (study_inventory only): no need to read the series' facts on every webhook batch.
        wanted: list[Wanted] = [(study_id, None, name, "auto") for study_id in sorted(study_ids) for name in auto]
        analyses_queue(wanted=wanted)
        return
    touched = series_ids if series_ids is not None else series_of_studies(study_ids=study_ids)
    facts = series_facts(series_ids=touched)
    analyses_queue(wanted=analyses_wanted(facts=facts, rules=rules, auto=auto))
