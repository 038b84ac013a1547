"""`ops.profile_ingest`'s measuring parts: the per-store phases read from the SCP's log lines, and context
switches counted per service under a process."""

from __future__ import annotations

import subprocess
import sys

import pydicom

from ops.profile_ingest import phases_summary, study_files, switches_by_service

LINE = (
    "2026-12-08T02:49:10.123Z  INFO dicom_scp_server::association: C-STORE stored sop=1.2.3 path=a/b/c.dcm "
    "size=525242 outcome=Stored {{ receipt_id: 9 }} ms=3 recv_us={recv} phases=write={write}us fsync={fsync}us "
    "parse=30us find=0us place={place}us calling=BENCH"
)


def test_phases_are_read_from_the_stored_lines_only() -> None:
    lines = [LINE.format(recv=100 * i, write=1000 + i, fsync=400, place=2000 - i) for i in range(1, 11)]
    lines.append("2026-12-08T02:49:11Z ERROR dicom_scp_server::association: C-STORE failed write=999999us")
    summary = phases_summary(lines)
    assert summary["recv_us"] == (600, 1000)
    assert summary["write"] == (1006, 1010)
    assert summary["fsync"] == (400, 400)
    assert summary["parse"] == (30, 30)
    assert summary["place"] == (1995, 1999)
    assert phases_summary(["nothing stored"]) == {}


def test_switches_are_counted_for_the_processes_under_the_root() -> None:
    # A process that sleeps 100 times (each sleep is a voluntary context switch), says so, then waits.
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time\nfor _ in range(100): time.sleep(0.001)\nprint('done', flush=True)\n"
         "time.sleep(30)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert sleeper.stdout is not None
        assert sleeper.stdout.readline() == b"done\n"
        counted = switches_by_service(sleeper.pid)
        assert set(counted) == {"other"}
        assert counted["other"] >= 100
    finally:
        sleeper.kill()
        sleeper.wait()
    # Nothing lives under a process that is gone.
    assert switches_by_service(sleeper.pid) == {}


def test_each_round_has_its_own_study_and_later_runs_reuse_it(tmp_path) -> None:
    first = study_files(tmp_path / "round-1", 2)
    second = study_files(tmp_path / "round-2", 2)
    studies = {pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in first + second}
    assert len(studies) == 2
    # A later run finds the files and does not write new ones.
    assert study_files(tmp_path / "round-1", 2) == first
    assert [f.stat().st_mtime_ns for f in first] == [f.stat().st_mtime_ns for f in study_files(tmp_path / "round-1", 2)]
