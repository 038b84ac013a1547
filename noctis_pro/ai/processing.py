"""The AI analysis queue in PostgreSQL: take one pending analysis (SKIP LOCKED), run its analyzer, store the outcome.

Several processors may run at once (`--scale ai_processor=N`): the row lock while taking, then the `running`
status with this processor's `worker` id, keep them apart. A `running` row older than AI_STUCK_AFTER_SECONDS
belongs to a processor that died and is taken again. A pending analysis is taken only once its study has been
quiet (not indexed) for AI_QUIET_SECONDS, so a study that arrives over many webhook batches is analysed once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from noctis_pro.ai.analyzers import analyzer_for
from noctis_pro.ai.models import AIAnalysis
from noctis_pro.contracts.events import AnalysisCompleted
from noctis_pro.core.events import publish_on_commit

logger = logging.getLogger(__name__)

Status = AIAnalysis.Status


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def _stuck_cutoff() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.AI_STUCK_AFTER_SECONDS)


def _completed(analysis: AIAnalysis) -> None:
    publish_on_commit(
        AnalysisCompleted(
            analysis_id=analysis.pk,
            study_instance_uid=analysis.study.study_instance_uid,
            analyzer=analysis.analyzer,
            status=analysis.status,
        )
    )


def analyses_fail_exhausted() -> int:
    """Fail stuck analyses that have no attempts left (their processors died each time)."""
    with transaction.atomic():
        exhausted = list(
            AIAnalysis.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("study")
            .filter(status=Status.RUNNING, started_at__lt=_stuck_cutoff(), attempts__gte=F("max_attempts"))
        )
        for analysis in exhausted:
            analysis.status = Status.FAILED
            analysis.error = f"gave up after {analysis.attempts} attempts (processor stopped responding)"
            analysis.finished_at = timezone.now()
            analysis.save(update_fields=["status", "error", "finished_at"])
            _completed(analysis)
    return len(exhausted)


def _quiet_cutoff() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.AI_QUIET_SECONDS)


def analysis_take_next(*, worker: str) -> AIAnalysis | None:
    """Claim the oldest pending analysis of a quiet study (or a stuck one) for `worker`, or None."""
    with transaction.atomic():
        analysis = (
            AIAnalysis.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("study")
            .filter(
                Q(status=Status.PENDING, study__updated_at__lte=_quiet_cutoff())
                | Q(status=Status.RUNNING, started_at__lt=_stuck_cutoff())
            )
            .filter(attempts__lt=F("max_attempts"))
            .order_by("created_at", "pk")
            .first()
        )
        if analysis is None:
            return None
        analysis.status = Status.RUNNING
        analysis.worker = worker
        analysis.attempts += 1
        analysis.started_at = timezone.now()
        analysis.finished_at = None
        analysis.save(update_fields=["status", "worker", "attempts", "started_at", "finished_at"])
    return analysis


def analysis_run(*, analysis: AIAnalysis) -> AIAnalysis:
    """Run the analysis' analyzer and store done/result, pending (retry) or failed/error."""
    analyzer = analyzer_for(analysis.analyzer)
    result = None
    error = ""
    retry = False
    if analyzer is None:
        error = f"unknown analyzer {analysis.analyzer!r}"
    else:
        try:
            result = analyzer.run(analysis)
        except Exception as exc:  # an analyzer's bug or bad data: record it on the row, retry while allowed
            logger.exception("analysis %s (%s) failed", analysis.pk, analysis.analyzer)
            error = f"{type(exc).__name__}: {exc}"
            retry = analysis.attempts < analysis.max_attempts
    with transaction.atomic():
        if analyzer is not None and not error:
            analysis.status, analysis.result, analysis.error = Status.DONE, result, ""
        elif retry:
            analysis.status, analysis.error = Status.PENDING, error
        else:
            analysis.status, analysis.error = Status.FAILED, error
        analysis.finished_at = None if retry else timezone.now()
        # Guarded: if this processor was presumed dead and another took the row, do not overwrite its work.
        updated = AIAnalysis.objects.filter(pk=analysis.pk, status=Status.RUNNING, worker=analysis.worker).update(
            status=analysis.status, result=analysis.result, error=analysis.error, finished_at=analysis.finished_at
        )
        if updated and analysis.status in (Status.DONE, Status.FAILED):
            _completed(analysis)
    logger.info("analysis %s (%s): %s %s", analysis.pk, analysis.analyzer, analysis.status, error)
    return analysis
