"""process_ai_analyses: takes pending analyses one at a time, runs study_inventory, stops cleanly on SIGTERM."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from pydicom.uid import generate_uid

from noctis_pro.ai import analyzers
from noctis_pro.ai.models import AIAnalysis
from noctis_pro.ai.processing import analysis_take_next
from noctis_pro.contracts.events import CHANNEL
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Receipt, Study
from tests.conftest import test_database_url

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_auto_analyses(settings: object) -> None:
    """These tests queue their analyses themselves (indexing would queue study_inventory on its own)."""
    settings.AI_AUTO_ANALYZERS = []  # type: ignore[attr-defined]


def study_with_gap(archive: Callable[..., Receipt]) -> Study:
    """A CT series with instances 1, 2, 4 (3 is missing) and an MR series with 1, 2."""
    study_uid, ct, mr = generate_uid(), generate_uid(), generate_uid()
    ids = [archive(study_uid=study_uid, series_uid=ct, instance_number=n, SeriesNumber=1).pk for n in (1, 2, 4)]
    ids += [
        archive(modality="MR", study_uid=study_uid, series_uid=mr, instance_number=n, SeriesNumber=2).pk for n in (1, 2)
    ]
    receipts_index(receipt_ids=ids)
    return Study.objects.get(study_instance_uid=study_uid)


@pytest.mark.django_db
def test_process_ai_analyses_runs_study_inventory_and_exits(archive: Callable[..., Receipt]) -> None:
    study = study_with_gap(archive)
    analysis = AIAnalysis.objects.create(study=study, analyzer="study_inventory")

    out = io.StringIO()
    call_command("process_ai_analyses", stdout=out)

    analysis.refresh_from_db()
    assert analysis.status == "done", analysis.error
    assert analysis.attempts == 1
    assert analysis.worker.endswith(f":{os.getpid()}")
    assert analysis.finished_at is not None
    result = analysis.result
    assert result["series_count"] == 2
    assert result["instance_count"] == 5
    assert result["modalities"] == ["CT", "MR"]
    ct, mr = result["series"]
    assert (ct["modality"], ct["instances"], ct["instance_number_gaps"]) == ("CT", 3, [3])
    assert (mr["modality"], mr["instances"], mr["instance_number_gaps"]) == ("MR", 2, [])
    assert result["complete"] is False
    assert result["study_counts_match_index"] is True
    assert "processed 1 analyses" in out.getvalue()


@pytest.mark.django_db
def test_unknown_analyzer_fails_with_a_clear_error(archive: Callable[..., Receipt]) -> None:
    study = study_with_gap(archive)
    analysis = AIAnalysis.objects.create(study=study, analyzer="crystal_ball")
    call_command("process_ai_analyses", stdout=io.StringIO())
    analysis.refresh_from_db()
    assert analysis.status == "failed"
    assert analysis.error == "unknown analyzer 'crystal_ball'"
    assert analysis.attempts == 1


@pytest.mark.django_db
def test_failing_analyzer_is_retried_until_max_attempts(
    archive: Callable[..., Receipt], monkeypatch: pytest.MonkeyPatch
) -> None:

    class Broken:
        name = "broken"

        def run(self, analysis: AIAnalysis) -> dict:
            raise ValueError("bad pixels")

    monkeypatch.setitem(analyzers.ANALYZERS, "broken", Broken())
    analysis = AIAnalysis.objects.create(study=study_with_gap(archive), analyzer="broken", max_attempts=2)
    call_command("process_ai_analyses", stdout=io.StringIO())
    analysis.refresh_from_db()
    assert analysis.status == "failed"
    assert analysis.attempts == 2
    assert analysis.error == "ValueError: bad pixels"


@pytest.mark.django_db
def test_stuck_running_analysis_is_taken_again(archive: Callable[..., Receipt], settings: object) -> None:
    study = study_with_gap(archive)
    stuck = AIAnalysis.objects.create(
        study=study, analyzer="study_inventory", status="running", attempts=1, worker="dead:1",
        started_at=timezone.now() - dt.timedelta(hours=2), heartbeat_at=timezone.now() - dt.timedelta(hours=1),
    )  # fmt: skip
    busy = AIAnalysis.objects.create(
        study=study, analyzer="study_inventory", status="running", attempts=1, worker="alive:2",
        started_at=timezone.now() - dt.timedelta(hours=2), heartbeat_at=timezone.now(),  # long, but alive
    )  # fmt: skip
    taken = analysis_take_next(worker="me:3")
    assert taken is not None
    assert taken.pk == stuck.pk
    assert (taken.worker, taken.attempts) == ("me:3", 2)
    assert analysis_take_next(worker="me:3") is None
    busy.refresh_from_db()
    assert busy.worker == "alive:2"


@pytest.mark.django_db(transaction=True)
def test_process_ai_analyses_continuous_stops_on_sigterm(archive: Callable[..., Receipt], tmp_path: Path) -> None:
    study = study_with_gap(archive)
    first = AIAnalysis.objects.create(study=study, analyzer="study_inventory")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "noctis_pro.settings.test",
        "DATABASE_URL": test_database_url(),
        "NOCTIS_ENV_FILE": str(tmp_path / "no.env"),
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "process_ai_analyses", "--continuous", "--poll-seconds", "0.2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and AIAnalysis.objects.get(pk=first.pk).status != "done":
            time.sleep(0.1)
        assert AIAnalysis.objects.get(pk=first.pk).status == "done"
        second = AIAnalysis.objects.create(study=study, analyzer="study_inventory")  # found by the running loop
        while time.monotonic() < deadline and AIAnalysis.objects.get(pk=second.pk).status != "done":
            time.sleep(0.1)
        assert AIAnalysis.objects.get(pk=second.pk).status == "done"

        stop_sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        assert time.monotonic() - stop_sent < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "stopping" in output
    assert "processed 2 analyses" in output


@pytest.mark.django_db
def test_indexing_queues_one_pending_analysis_per_study(archive: Callable[..., Receipt], settings: object) -> None:
    settings.AI_AUTO_ANALYZERS = ["study_inventory"]  # type: ignore[attr-defined]
    study_uid = generate_uid()
    receipts_index(receipt_ids=[archive(study_uid=study_uid, instance_number=1).pk])
    receipts_index(receipt_ids=[archive(study_uid=study_uid, instance_number=2).pk])  # still pending: no second
    pending = AIAnalysis.objects.filter(study__study_instance_uid=study_uid)
    assert [(a.analyzer, a.status) for a in pending] == [("study_inventory", "pending")]

    call_command("process_ai_analyses", stdout=io.StringIO())
    receipts_index(receipt_ids=[archive(study_uid=study_uid, instance_number=3).pk])  # new images: a new run
    assert sorted(pending.values_list("status", flat=True)) == ["done", "pending"]
    assert pending.get(status="done").result["instance_count"] == 2


@pytest.mark.django_db
def test_a_finished_analysis_is_announced_after_commit(
    archive: Callable[..., Receipt], django_capture_on_commit_callbacks: Any
) -> None:
    study = study_with_gap(archive)
    analysis = AIAnalysis.objects.create(study=study, analyzer="study_inventory")
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    try:
        pubsub.get_message(timeout=1)  # the subscribe confirmation
        with django_capture_on_commit_callbacks(execute=True):
            call_command("process_ai_analyses", stdout=io.StringIO())
        events = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message and message["type"] == "message":
                event = json.loads(message["data"])
                if event.get("analysis_id") == analysis.pk:
                    events.append(event)
    finally:
        pubsub.close()
        client.close()
    assert events == [
        {"type": "analysis.completed", "analysis_id": analysis.pk, "study_instance_uid": study.study_instance_uid,
         "analyzer": "study_inventory", "status": "done"}
    ]  # fmt: skip


@pytest.mark.django_db
def test_a_burst_of_batches_queues_one_analysis_run_after_the_study_is_quiet(
    archive: Callable[..., Receipt], settings: object
) -> None:
    settings.AI_AUTO_ANALYZERS = ["study_inventory"]  # type: ignore[attr-defined]
    settings.AI_QUIET_SECONDS = 60  # type: ignore[attr-defined]
    study_uid = generate_uid()
    for n in range(1, 11):  # ten webhook batches of one study
        receipts_index(receipt_ids=[archive(study_uid=study_uid, instance_number=n).pk])
        assert analysis_take_next(worker="test:1") is None  # the study is still arriving
    pending = AIAnalysis.objects.filter(study__study_instance_uid=study_uid)
    assert [(a.analyzer, a.status) for a in pending] == [("study_inventory", "pending")]

    Study.objects.filter(study_instance_uid=study_uid).update(updated_at=timezone.now() - dt.timedelta(seconds=61))
    taken = analysis_take_next(worker="test:1")
    assert taken is not None
    assert taken.study.study_instance_uid == study_uid
    assert taken.status == "running"
