"""The AI analysis queue in PostgreSQL: take one pending analysis (SKIP LOCKED), run its analyzer, store the outcome.

Several processors may run at once (`--scale ai_processor=N`): the row lock while taking, then the `running`
status with this processor's `worker` id, keep them apart. A `running` row whose heartbeat (refreshed every
AI_HEARTBEAT_SECONDS while it runs) is older than AI_STUCK_AFTER_SECONDS belongs to a processor that died and is
taken again; a long analysis with a live processor never is. A pending analysis is taken only once its study has
been quiet (not indexed) for AI_QUIET_SECONDS, so a study that arrives over many webhook batches is analysed once.

Running one: the analyzer gets an AnalysisContext (the study's or the series' instances and their files); its
measurements, when AI_WRITEBACK is on, go back into the archive as a TID 1500 SR (writeback.py) before the
analysis is marked done, so a processor that dies in between leaves it to be retried, not half-done.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from noctis_pro.ai import writeback
from noctis_pro.ai.analyzers import analyzer_for
from noctis_pro.ai.analyzers.base import (
    AnalysisContext,
    Analyzer,
    AnalyzerOutput,
    NotApplicableError,
    PermanentError,
)
from noctis_pro.ai.models import AIAnalysis
from noctis_pro.ai.selectors import series_refs
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
            .filter(status=Status.RUNNING, heartbeat_at__lt=_stuck_cutoff(), attempts__gte=F("max_attempts"))
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
                | Q(status=Status.RUNNING, heartbeat_at__lt=_stuck_cutoff())
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
        analysis.started_at = analysis.heartbeat_at = timezone.now()
        analysis.finished_at = None
        analysis.save(update_fields=["status", "worker", "attempts", "started_at", "heartbeat_at", "finished_at"])
    return analysis


def analysis_context(analysis: AIAnalysis) -> AnalysisContext:
    return AnalysisContext(
        analysis_id=analysis.pk,
        analyzer=analysis.analyzer,
        study_id=analysis.study_id,
        study_instance_uid=analysis.study.study_instance_uid,
        series_id=analysis.series_id,
        series=series_refs(study_id=analysis.study_id, series_id=analysis.series_id),
    )


def analyzer_execute(analyzer: Analyzer, context: AnalysisContext) -> dict[str, Any]:
    """Run the analyzer on the context and archive its DICOM outputs; the result JSON (with what was stored)."""
    if context.series_id is not None:
        if not context.series:
            raise NotApplicableError("the series is no longer in the index")
        if not analyzer.applies_to(context.series[0].facts):
            series = context.series[0]
            raise NotApplicableError(f"{analyzer.name} does not apply to {series.modality or 'this'} series")
    output = analyzer.run(context)
    if isinstance(output, dict):  # a plugin may return the result alone
        output = AnalyzerOutput(result=output)
    result = dict(output.result)
    datasets = list(output.datasets)
    if settings.AI_WRITEBACK and output.measurements:
        series = next((s for s in context.series if s.series_instance_uid == output.measurement_series_uid), None)
        if series is not None and series.instances:
            datasets.append(
                writeback.measurement_report_build(
                    analysis_id=context.analysis_id,
                    analyzer=analyzer.name,
                    study_uid=context.study_instance_uid,
                    evidence=writeback.evidence_read(series.instances),
                    measurements=output.measurements,
                )
            )
    stored = []
    for ds in datasets:
        writeback.dataset_store(ds)
        stored.append({"sop_instance_uid": str(ds.SOPInstanceUID), "series_instance_uid": str(ds.SeriesInstanceUID),
                       "sop_class_uid": str(ds.SOPClassUID)})  # fmt: skip
    if stored:
        result["dicom_outputs"] = stored
    return result


class ProcessorStoppingError(BaseException):
    """Raised in the processor's main thread by a second SIGTERM/SIGINT: stop now, release the analysis.
    A BaseException, so no analyzer's `except Exception` swallows it."""


def analysis_release(*, analysis: AIAnalysis) -> bool:
    """Give a running analysis back to the queue as if this attempt never happened (its processor is stopping)."""
    connection.close()  # the stop may have interrupted a query: start from a fresh connection
    released = AIAnalysis.objects.filter(pk=analysis.pk, status=Status.RUNNING, worker=analysis.worker).update(
        status=Status.PENDING,
        attempts=F("attempts") - 1,
        started_at=None,
        heartbeat_at=None,
        error=f"released by {analysis.worker} (stopped)",
    )
    logger.info("analysis %s (%s) released", analysis.pk, analysis.analyzer)
    return bool(released)


class Heartbeat:
    """While an analysis runs, a thread refreshes its heartbeat_at (on its own connection, closed at the end)."""

    def __init__(self, analysis: AIAnalysis) -> None:
        self.analysis = analysis
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{analysis.pk}", daemon=True)

    def _beat(self) -> None:
        try:
            while not self.stop.wait(settings.AI_HEARTBEAT_SECONDS):
                try:
                    AIAnalysis.objects.filter(
                        pk=self.analysis.pk, status=Status.RUNNING, worker=self.analysis.worker
                    ).update(heartbeat_at=timezone.now())
                except DatabaseError:  # the database is away for a moment: the next beat tries again
                    logger.warning("heartbeat of analysis %s not recorded", self.analysis.pk, exc_info=True)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def analysis_run(*, analysis: AIAnalysis) -> AIAnalysis:
    """Run the analysis' analyzer and store done/result, pending (retry) or failed/error."""
    analyzer = analyzer_for(analysis.analyzer)
    result = None
    error = ""
    retry = False
    began = time.monotonic()
    if analyzer is None:
        error = f"unknown analyzer {analysis.analyzer!r}"
    else:
        try:
            with Heartbeat(analysis):
                result = analyzer_execute(analyzer, analysis_context(analysis))
        except NotApplicableError as exc:  # no retry makes the data analysable
            error = f"not applicable: {exc}"
        except PermanentError as exc:  # nor a broken model config
            error = str(exc)
        except Exception as exc:  # an analyzer's bug or bad data: record it on the row, retry while allowed
            logger.exception("analysis %s (%s) failed", analysis.pk, analysis.analyzer)
            error = f"{type(exc).__name__}: {exc}"
            retry = analysis.attempts < analysis.max_attempts
    duration_ms = int((time.monotonic() - began) * 1000)
    with transaction.atomic():
        if analyzer is not None and not error:
            analysis.status, analysis.result, analysis.error = Status.DONE, result, ""
        elif retry:
            analysis.status, analysis.error = Status.PENDING, error
        else:
            analysis.status, analysis.error = Status.FAILED, error
        analysis.finished_at = None if retry else timezone.now()
        analysis.duration_ms = duration_ms
        # Guarded: if this processor was presumed dead and another took the row, do not overwrite its work.
        updated = AIAnalysis.objects.filter(pk=analysis.pk, status=Status.RUNNING, worker=analysis.worker).update(
            status=analysis.status,
            result=analysis.result,
            error=analysis.error,
            finished_at=analysis.finished_at,
            duration_ms=duration_ms,
        )
        if updated and analysis.status in (Status.DONE, Status.FAILED):
            _completed(analysis)
    logger.info("analysis %s (%s): %s in %d ms %s", analysis.pk, analysis.analyzer, analysis.status, duration_ms, error)
    return analysis
