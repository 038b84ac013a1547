"""`make bench`: ingest throughput of the SCP (fsync + receipt + index) beside dcmtk's storescp (files only).

2,000 CT instances of 512x512x16 bit, sent by dcmtk storescu over 1 and 4 associations, to 127.0.0.1 only.
Prints instances/s and MB/s for each, the ratio SCP/storescp, and the time from the last C-STORE response to the
last instance indexed. The machine is shared and noisy: compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ops.launch import free_port, stack_launch

ROOT = Path(__file__).resolve().parent.parent


def ct_series(directory: Path, count: int, *, size: int = 512) -> list[Path]:
    """`count` CT slices of one new study: realistic 16-bit signed pixels, ~0.5 MB each."""
    directory.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size]
    body = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 2.3) ** 2
    base = np.where(body, 40, -1000).astype(np.int16)
    files = []
    for i in range(1, count + 1):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientName, ds.PatientID, ds.Modality = "Bench^Patient", "BENCH", "CT"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260101", "120000", "BENCH1"
        ds.SeriesNumber, ds.InstanceNumber = 1, i
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        noise = rng.integers(-20, 20, size=(size, size), dtype=np.int16)
        ds.PixelData = (base + noise + 1024).astype(np.int16).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def send(files: list[Path], *, port: int, ae_title: str, associations: int) -> float:
    """Seconds for `associations` parallel storescu processes to send `files` (split evenly)."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    chunks = [files[i::associations] for i in range(associations)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["storescu", "-aec", ae_title, "-aet", "BENCH", "127.0.0.1", str(port), *map(str, chunk)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for chunk in chunks
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - start


def storescp_run(files: list[Path], *, associations: int, workdir: Path) -> float:
    port = free_port()
    out = workdir / f"storescp-{associations}"
    out.mkdir(parents=True)
    argv = ["storescp", "--fork", "-aet", "STORESCP", "-od", str(out), str(port)]
    proc = subprocess.Popen(argv, env={**os.environ, "TCP_NODELAY": "1"}, start_new_session=True)
    try:
        time.sleep(0.5)
        return send(files, port=port, ae_title="STORESCP", associations=associations)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        shutil.rmtree(out, ignore_errors=True)


def index_lag(database_url: str, study_uid: str, expected: int, timeout: float = 300) -> float:
    start = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.perf_counter() - start < timeout:
            row = conn.execute(
                "SELECT count(*) FROM pacs_instance i JOIN pacs_series se ON se.id = i.series_id "
                "JOIN pacs_study st ON st.id = se.study_id WHERE st.study_instance_uid = %s",
                (study_uid,),
            ).fetchone()
            if row and row[0] >= expected:
                return time.perf_counter() - start
            time.sleep(0.05)
    raise RuntimeError(f"not indexed within {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="noctis-bench-", dir=ROOT / "var" if (ROOT / "var").exists() else None))
    print(f"generating {args.instances} CT instances of {args.size}x{args.size}x16 bit ...", flush=True)
    files = ct_series(work / "data", args.instances, size=args.size)
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    stack = stack_launch(work, timeout=300)
    env = stack.env
    results = []
    try:
        for associations in (1, 4):
            peer = storescp_run(files, associations=associations, workdir=work)
            batch = ct_series(work / f"scp-{associations}", args.instances, size=args.size)
            from pydicom import dcmread

            study_uid = dcmread(batch[0], stop_before_pixels=True).StudyInstanceUID
            ours = send(batch, port=int(env["DICOM_PORT"]), ae_title=env["DICOM_AE_TITLE"], associations=associations)
            lag = index_lag(env["DATABASE_URL"], study_uid, len(batch))
            results.append((associations, ours, peer, lag))
            shutil.rmtree(work / f"scp-{associations}", ignore_errors=True)
    finally:
        stack.stop()
    n = args.instances
    print(f"\n{n} instances, {megabytes:.0f} MB, storescu -> 127.0.0.1 (TCP_NODELAY=1)")
    print(f"{'assoc':>5} {'SCP inst/s':>11} {'SCP MB/s':>9} {'storescp inst/s':>16} {'ratio':>6} {'index lag':>10}")
    for associations, ours, peer, lag in results:
        print(
            f"{associations:>5} {n / ours:>11.0f} {megabytes / ours:>9.1f} {n / peer:>16.0f} "
            f"{peer / ours:>6.2f} {lag:>9.2f}s"
        )
    print("ratio = SCP rate / storescp rate (SCP: fsync + receipt + index; storescp: files only, no fsync)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
