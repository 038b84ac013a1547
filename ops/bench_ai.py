"""`make bench-ai`: analyses per second of the completeness and quality analyzers on a 300-slice CT, with one and
two `process_ai_analyses` processes.

A private stack is launched for its PostgreSQL (ops.launch); the benchmark works in a database of its own there
(so the stack's processor never takes its analyses), with the series generated (300 slices, 512x512x16 bit) and
indexed up front. For each analyzer and processor count (median of --repeat runs): the processors start and report
ready, then N pending analyses of the series are inserted at once and the clock runs until all are done.
Write-back is off: the figure is the analyzers' and the queue's throughput. 2 shared cores: compare the 1 vs 2
ratio, not absolute figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ops import embedded
from ops.launch import stack_launch

ROOT = Path(__file__).resolve().parent.parent
SLICES = 300
BENCH_DB = "noctis_bench_ai"


def ct_series(storage: Path, slices: int) -> list[tuple[Path, object]]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    study_uid, series_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    body = (yy - 256) ** 2 + (xx - 256) ** 2 < 200**2
    out = []
    for n in range(1, slices + 1):
        hu = -1000 + rng.normal(0, 10, (512, 512))
        hu[body] = 40 + rng.normal(0, 10, int(body.sum()))
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientName, ds.PatientID, ds.Modality = "Bench^AI", "BENCH-AI", "CT"
        ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20260101", 1, n
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [-180.0, -180.0, n * 1.25], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.25
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (hu + 1024).round().astype(np.int16).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
            CTImageStorage,
            ds.SOPInstanceUID,
        )
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        rel = Path(study_uid) / series_uid / f"{ds.SOPInstanceUID}.dcm"
        (storage / rel).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(storage / rel, enforce_file_format=True)
        out.append((rel, ds))
    return out


def series_index(storage: Path, series: list[tuple[Path, object]]) -> int:
    """Receipts as the SCP writes them, then the single indexing path; returns the study id."""
    from django.db import connection
    from pydicom.multival import MultiValue

    from noctis_pro.contracts.receipt import ATTR_KEYWORDS, SOURCE_DIMSE
    from noctis_pro.pacs.indexing import receipts_index
    from noctis_pro.pacs.models import Study

    ids = []
    with connection.cursor() as cursor:
        for rel, ds in series:
            data = (storage / rel).read_bytes()
            attrs = {}
            for keyword in ATTR_KEYWORDS:
                if keyword in ds:  # type: ignore[operator]
                    value = ds[keyword].value  # type: ignore[index]
                    attrs[keyword] = "\\".join(map(str, value)) if isinstance(value, MultiValue | list) else str(value)
            cursor.execute(
                "INSERT INTO pacs_receipt (sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,"
                " transfer_syntax_uid, path, size_bytes, digest, calling_ae, called_ae, source, attrs)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
                [ds.SOPInstanceUID, ds.SOPClassUID, ds.StudyInstanceUID, ds.SeriesInstanceUID,  # type: ignore[attr-defined]
                 ds.file_meta.TransferSyntaxUID, str(rel), len(data), "sha256:" + hashlib.sha256(data).hexdigest(),  # type: ignore[attr-defined]
                 "BENCH", "NOCTIS", SOURCE_DIMSE, json.dumps(attrs)],
            )  # fmt: skip
            ids.append(cursor.fetchone()[0])
    for start in range(0, len(ids), 100):
        receipts_index(receipt_ids=ids[start : start + 100])
    return Study.objects.get(study_instance_uid=series[0][1].StudyInstanceUID).pk  # type: ignore[attr-defined]


def processors_start(count: int, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "process_ai_analyses", "--continuous", "--poll-seconds", "0.05"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "AI processor" in line and "started" in line:
                break
        else:
            raise RuntimeError(f"a processor exited ({proc.wait()}) before starting")
    return procs


def run(analyzer: str, *, processors: int, analyses: int, study_id: int, series_id: int, env: dict[str, str]) -> float:
    from noctis_pro.ai.models import AIAnalysis

    procs = processors_start(processors, env)
    try:
        began = time.monotonic()
        rows = AIAnalysis.objects.bulk_create(
            [AIAnalysis(study_id=study_id, series_id=series_id, analyzer=analyzer) for _ in range(analyses)]
        )
        ids = [r.pk for r in rows]
        while AIAnalysis.objects.filter(pk__in=ids, status__in=["done", "failed"]).count() < len(ids):
            time.sleep(0.02)
        elapsed = time.monotonic() - began
        failed = AIAnalysis.objects.filter(pk__in=ids, status="failed").first()
        if failed is not None:
            raise RuntimeError(f"{analyzer} failed: {failed.error}")
        return analyses / elapsed
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--analyses", type=int, default=int(os.environ.get("BENCH_AI_ANALYSES", "30")))
    parser.add_argument("--slices", type=int, default=SLICES)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ai-") as tmp:
        base = Path(tmp)
        print("launching a private stack for its PostgreSQL ...", flush=True)
        (base / "stack").mkdir()
        launched = stack_launch(base / "stack")
        try:
            parts = urlsplit(launched.env["DATABASE_URL"])
            embedded.postgres_create_database(admin_url=urlunsplit(parts._replace(path="/postgres")), dbname=BENCH_DB)
            storage = base / "storage"
            storage.mkdir()
            env = {
                **launched.env,
                "DATABASE_URL": urlunsplit(parts._replace(path=f"/{BENCH_DB}")),
                "STORAGE_ROOT": str(storage),
                "AI_WRITEBACK": "0",
                "AI_AUTO_ANALYZERS": "",
                "AI_QUIET_SECONDS": "0",
                "PYTHONUNBUFFERED": "1",
            }
            subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
            os.environ.update(env)
            import django

            django.setup()
            from noctis_pro.pacs.models import Series

            print(f"generating and indexing a {args.slices}-slice CT (512x512x16) ...", flush=True)
            study_id = series_index(storage, ct_series(storage, args.slices))
            series_id = Series.objects.get(study_id=study_id).pk
            print(f"\n{args.analyses} analyses of one {args.slices}-slice CT series per run, median of {args.repeat}")
            print(f"{'analyzer':<22}{'1 processor':>14}{'2 processors':>15}{'ratio':>8}")
            for analyzer in ("series_completeness", "image_quality"):
                rates = [
                    statistics.median(
                        run(analyzer, processors=n, analyses=args.analyses, study_id=study_id, series_id=series_id,
                            env=env)
                        for _ in range(args.repeat)
                    )
                    for n in (1, 2)
                ]  # fmt: skip
                print(f"{analyzer:<22}{rates[0]:>10.1f} /s{rates[1]:>11.1f} /s{rates[1] / rates[0]:>7.2f}x", flush=True)
        finally:
            launched.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
