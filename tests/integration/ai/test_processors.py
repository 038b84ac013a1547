"""Two `process_ai_analyses --continuous` processes side by side: each analysis runs exactly once, also one that
lasts longer than the stuck timeout (its heartbeat keeps it); a processor killed (SIGKILL) mid-analysis leaves it
to be taken again once its heartbeat is stale, not lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from noctis_pro.ai.models import AIAnalysis
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt, Study
from tests.conftest import test_database_url

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = "tests.integration.ai.slow_analyzer:SlowAnalyzer"
STUCK_AFTER_SECONDS = 2
HEARTBEAT_SECONDS = 0.3


@pytest.fixture
def processors(tmp_path: Path) -> Iterator[Callable[..., list[subprocess.Popen[str]]]]:
    """`start(slow_seconds, count)`: processors with the slow plugin, returned once each has logged its start."""
    started: list[subprocess.Popen[str]] = []

    def start(slow_seconds: float, count: int = 1) -> list[subprocess.Popen[str]]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "noctis_pro.settings.test",
            "DATABASE_URL": test_database_url(),
            "NOCTIS_ENV_FILE": str(tmp_path / "no.env"),
            "AI_ANALYZER_PLUGINS": PLUGIN,
            "AI_AUTO_ANALYZERS": "",
            "AI_STUCK_AFTER_SECONDS": str(STUCK_AFTER_SECONDS),
            "AI_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "AI_TEST_RUN_LOG": str(tmp_path / "runs.log"),
            "AI_TEST_SLOW_SECONDS": str(slow_seconds),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [sys.executable, "manage.py", "process_ai_analyses", "--continuous", "--poll-seconds", "0.1"]
        procs = [
            subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(count)
        ]
        started.extend(procs)
        for proc in procs:
            assert proc.stdout is not None
            for line in proc.stdout:  # the logger's start line: Django is up, the loop begins
                if "AI processor" in line and "started" in line:
                    break
            else:
                pytest.fail(f"the processor exited ({proc.wait()}) before starting")
        return procs

    yield start
    running = [proc for proc in started if proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGKILL)  # their analyses are the test's, already checked: no need to finish them
    for proc in running:
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def runs(tmp_path: Path) -> list[tuple[int, int]]:
    path = tmp_path / "runs.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(a), int(p)) for a, p in (line.split() for line in lines)]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def a_study(archive: Callable[..., Receipt]) -> Study:
    study_uid = generate_uid()
    receipts_index(receipt_ids=[archive(study_uid=study_uid).pk])
    return Study.objects.get(study_instance_uid=study_uid)


@pytest.mark.django_db(transaction=True)
def test_two_processors_run_each_analysis_exactly_once(
    archive: Callable[..., Receipt], processors: Callable[..., list[subprocess.Popen[str]]], tmp_path: Path
) -> None:
    first, second = processors(0.5, count=2)
    study = a_study(archive)
    analyses = [AIAnalysis.objects.create(study=study, analyzer="test_slow") for _ in range(8)]
    ids = {a.pk for a in analyses}
    wait_for(lambda: AIAnalysis.objects.filter(pk__in=ids, status="done").count() == len(ids), 60, "8 analyses")

    ran = runs(tmp_path)
    assert sorted(a for a, _ in ran) == sorted(ids)  # every analysis ran, none twice
    assert set(AIAnalysis.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {1}
    by_pid = Counter(pid for _, pid in ran)
    assert set(by_pid) == {first.pid, second.pid}, by_pid  # both took work
    workers = {w.rsplit(":", 1)[1] for w in AIAnalysis.objects.filter(pk__in=ids).values_list("worker", flat=True)}
    assert workers == {str(first.pid), str(second.pid)}


@pytest.mark.django_db(transaction=True)
def test_a_processor_killed_mid_analysis_leads_to_a_retry_not_a_loss(
    archive: Callable[..., Receipt], processors: Callable[..., list[subprocess.Popen[str]]], tmp_path: Path
) -> None:
    (doomed,) = processors(30)
    analysis = AIAnalysis.objects.create(study=a_study(archive), analyzer="test_slow")
    wait_for(lambda: runs(tmp_path) == [(analysis.pk, doomed.pid)], 30, "the first run to start")
    analysis.refresh_from_db()
    assert (analysis.status, analysis.worker.rsplit(":", 1)[1]) == ("running", str(doomed.pid))
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)

    (survivor,) = processors(0.1)
    wait_for(lambda: AIAnalysis.objects.get(pk=analysis.pk).status == "done", 30, "the retry to finish")
    analysis.refresh_from_db()
    assert analysis.attempts == 2
    assert analysis.worker.rsplit(":", 1)[1] == str(survivor.pid)
    assert analysis.result == {"slept_by": survivor.pid}
    assert runs(tmp_path) == [(analysis.pk, doomed.pid), (analysis.pk, survivor.pid)]


@pytest.mark.django_db(transaction=True)
def test_an_analysis_longer_than_the_stuck_timeout_is_not_taken_twice(
    archive: Callable[..., Receipt], processors: Callable[..., list[subprocess.Popen[str]]], tmp_path: Path
) -> None:
    processors(STUCK_AFTER_SECONDS * 2, count=2)
    analysis = AIAnalysis.objects.create(study=a_study(archive), analyzer="test_slow")
    wait_for(lambda: AIAnalysis.objects.get(pk=analysis.pk).status == "done", 30, "the long analysis")
    analysis.refresh_from_db()
    assert analysis.attempts == 1
    assert len(runs(tmp_path)) == 1
    assert analysis.heartbeat_at > analysis.started_at  # refreshed while it ran


@pytest.mark.django_db(transaction=True)
def test_sigterm_finishes_the_analysis_and_a_second_one_releases_it(
    archive: Callable[..., Receipt], processors: Callable[..., list[subprocess.Popen[str]]], tmp_path: Path
) -> None:
    (stopping,) = processors(30)
    analysis = AIAnalysis.objects.create(study=a_study(archive), analyzer="test_slow")
    wait_for(lambda: runs(tmp_path) == [(analysis.pk, stopping.pid)], 30, "the run to start")
    stopping.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert stopping.poll() is None  # the first SIGTERM lets the analysis finish
    assert AIAnalysis.objects.get(pk=analysis.pk).status == "running"
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(timeout=10) == 0  # the second stops at once

    analysis.refresh_from_db()
    assert (analysis.status, analysis.attempts) == ("pending", 0)  # released: the attempt does not count
    assert analysis.error == f"released by {analysis.worker} (stopped)"
    (taker,) = processors(0.1)
    wait_for(lambda: AIAnalysis.objects.get(pk=analysis.pk).status == "done", 30, "the released analysis")
    analysis.refresh_from_db()
    assert (analysis.attempts, analysis.error) == (1, "")
    assert [pid for _, pid in runs(tmp_path)] == [stopping.pid, taker.pid]
