"""AI analyses through the real stack: a CT study arrives by storescu, the rules queue completeness and quality for
it, two `process_ai_analyses` processes (the stack's and a second one) share the work, each analysis runs once,
`analysis.completed` reaches /ws, results are served at /api/v1, and the TID 1500 SRs written back are indexed and
carry the measurements. A user's POST queues a dose analysis that reads CTDIvol."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import websockets
from pydicom.uid import generate_uid

from tests.conftest import write_dataset
from tests.integration.ai.series import AIR_HU, ct_slice
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.e2e
CALLING_AE = "AI_E2E"  # the rules below match only this sender, so other tests' studies are not analysed
TIMEOUT_SECONDS = 120
RULES = (("e2e-completeness", "series_completeness"), ("e2e-quality", "image_quality"))


@pytest.fixture
def ai_rules(stack: Stack) -> Iterator[None]:
    create = "; ".join(
        f"AnalysisRule.objects.update_or_create(name={name!r}, defaults=dict(analyzer={analyzer!r}, modality='CT',"
        f" calling_ae={CALLING_AE!r}, enabled=True))"
        for name, analyzer in RULES
    )
    stack.manage("shell", "-c", f"from noctis_pro.ai.models import AnalysisRule; {create}")
    yield
    names = [name for name, _ in RULES]
    stack.manage("shell", "-c", f"from noctis_pro.ai.models import AnalysisRule; "
                 f"AnalysisRule.objects.filter(name__in={names!r}).delete()")  # fmt: skip


@pytest.fixture
def second_processor(stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "process_ai_analyses", "--continuous"],
        cwd=ROOT, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def api(stack: Stack, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, stack.base_url + path, headers=headers, timeout=15, **kwargs)


def storescu(stack: Stack, files: list[Path]) -> subprocess.CompletedProcess[str]:
    argv = ["storescu", "-aec", stack.ae_title, "-aet", CALLING_AE, "127.0.0.1", str(stack.dicom_port)]
    return subprocess.run(
        [*argv, *map(str, files)], capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"}, timeout=120
    )


def sr_numbers(ds: pydicom.Dataset) -> dict[str, float]:
    """Concept code -> value of every NUM item in the SR tree."""
    found: dict[str, float] = {}
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "NUM":
            found[item.ConceptNameCodeSequence[0].CodeValue] = float(item.MeasuredValueSequence[0].NumericValue)
        found.update(sr_numbers(item))
    return found


def wait_done(stack: Stack, token: str, study_uid: str, analyzers: set[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        response = api(stack, token, "GET", f"/api/v1/studies/{study_uid}/analyses")
        assert response.status_code == 200, response.text
        rows = [a for a in response.json() if a["analyzer"] in analyzers]
        if {a["analyzer"] for a in rows if a["status"] in ("done", "failed")} == analyzers:
            return rows
        assert time.monotonic() < deadline, f"analyses not finished: {rows}\n{stack.log_tail()}"
        time.sleep(0.5)


def test_arriving_ct_is_analysed_once_announced_served_and_written_back(
    stack: Stack, api_token: str, ai_rules: None, second_processor: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    numbers = [n for n in range(1, 13) if n != 6]  # instance 6 (z = 15 mm) left out on purpose
    files = [
        write_dataset(
            ct_slice(study_uid=study_uid, series_uid=series_uid, number=n, z=n * 2.5, CTDIvol=9.75,
                     PatientID="E2E-AI-1"),
            tmp_path / f"{n}.dcm",
        )
        for n in numbers
    ]  # fmt: skip

    async def send_and_listen() -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {api_token}"}
        async with websockets.connect(stack.ws_url, additional_headers=headers, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), timeout=5)  # hello
            result = await asyncio.to_thread(storescu, stack, files)
            assert result.returncode == 0, result.stderr
            events: list[dict[str, Any]] = []
            wanted = {analyzer for _, analyzer in RULES}
            while {e["analyzer"] for e in events} != wanted:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout=TIMEOUT_SECONDS))
                ours = event.get("type") == "analysis.completed" and event.get("study_instance_uid") == study_uid
                if ours and event["analyzer"] in wanted:
                    events.append(event)
            return events

    events = asyncio.run(send_and_listen())
    assert {(e["analyzer"], e["status"]) for e in events} == {(a, "done") for _, a in RULES}

    rows = wait_done(stack, api_token, study_uid, {a for _, a in RULES})
    by_name = {a["analyzer"]: a for a in rows}
    assert len(rows) == 2, rows  # one analysis per (series, analyzer): the burst of batches queued each once
    assert {a["attempts"] for a in rows} == {1}  # two processors, each analysis run once
    assert {a["id"] for a in rows} == {e["analysis_id"] for e in events}
    completeness, quality = by_name["series_completeness"], by_name["image_quality"]
    assert completeness["series_uid"] == series_uid
    assert completeness["requested_by"] == "rule:e2e-completeness"
    assert completeness["result"]["missing_instance_numbers"] == [6]
    assert completeness["result"]["gaps"] == [
        {"after_mm": 12.5, "before_mm": 17.5, "distance_mm": 5.0, "missing_slices": 1}
    ]
    assert quality["result"]["ct_air_hu"] == pytest.approx(AIR_HU, abs=3.0)

    # The SRs written back are indexed like any image (one per analysis: none was run twice) and hold the numbers.
    outputs = {name: a["result"]["dicom_outputs"] for name, a in by_name.items()}
    assert all(len(o) == 1 for o in outputs.values()), outputs
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        series = api(stack, api_token, "GET", f"/api/v1/studies/{study_uid}").json()["series"]
        if sum(1 for s in series if s["modality"] == "SR") == 2:
            break
        assert time.monotonic() < deadline, f"SRs not indexed: {series}"
        time.sleep(0.5)
    measured = {}
    for name, (output,) in outputs.items():
        sr = pydicom.dcmread(stack.storage_root / study_uid / output["series_instance_uid"] /
                             f"{output['sop_instance_uid']}.dcm")  # fmt: skip
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
        assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        assert sr.StudyInstanceUID == study_uid
        measured[name] = sr_numbers(sr)
    assert measured["series_completeness"]["NOC-C2"] == 1.0  # one missing instance number
    assert measured["series_completeness"]["NOC-C4"] == 2.5  # nominal spacing, mm
    assert measured["image_quality"]["NOC-Q5"] == pytest.approx(AIR_HU, abs=3.0)

    # A user asks for the dose: queued by the API, run by a processor, CTDIvol read from the images.
    analyses_path = f"/api/v1/studies/{study_uid}/analyses"
    response = api(stack, api_token, "POST", analyses_path, json={"analyzer": "radiation_dose"})
    assert response.status_code == 202, response.text
    assert response.json()["queued"] == 1
    (dose,) = wait_done(stack, api_token, study_uid, {"radiation_dose"})
    assert dose["status"] == "done", dose["error"]
    assert dose["requested_by"] == "api:" + stack.admin_user
    assert dose["result"]["ctdivol_max_mgy"] == 9.75
    bad = api(stack, api_token, "POST", analyses_path, json={"analyzer": "oracle"})
    assert bad.status_code == 400
    assert "unknown analyzer 'oracle'" in bad.json()["detail"]
