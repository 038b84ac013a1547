"""`make bench`: ingest throughput of the SCP (fsync + receipt + index) beside dcmtk's storescp (files only).

2,000 CT instances of 512x512x16 bit, sent by dcmtk storescu over 1 and 4 associations, to 127.0.0.1 only.
Prints instances/s and MB/s for each, the ratio SCP/storescp, the time from the last C-STORE response to the
last instance indexed, and where the CPU went during each run (the machine has 2 cores: storescu, the SCP,
PostgreSQL and Django's indexing share them). The machine is shared and noisy: compare the ratios, not the
absolute figures.

Both peers get the same conditions: the same files (generated up front, already in the page cache), a `sync`
and a quiet stack before each run (the previous run's indexing, thumbnails and metadata cache finished), and
nothing deleted until the end. Deleting thousands of files just before a run is not neutral on this filesystem
(ext4 without a journal skips inodes freed in the last minutes, scanning past them on every file creation), so
whoever ran after a deletion would pay for it: in a run started within 5 minutes of another run's clean-up, the
kernel's inode search took about a fifth of the SCP's CPU. `--keep` leaves the files, for back-to-back runs.

A single run says little on a shared VM: storescp's own rate has been seen to vary fourfold between runs minutes
apart (its page-cache writes cost whatever fresh guest memory costs at the time). So each association count
runs `--rounds` rounds (default 3) of both peers, the order alternating from round to round (storescp first,
then NoctisPro first, ...), each round with a new study for the SCP; the ratio reported is the median of the
rounds' ratios, with every round's figures printed beside it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ops.launch import free_port, stack_launch

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Process name (comm, or a word of the command line) -> the service it counts for in the CPU split.
SERVICES = {
    "dicom_scp_serve": "scp",
    "postgres": "postgres",
    "gunicorn": "django",
    "celery": "celery",
    "uvicorn": "fastapi",
    "process_ai_analyses": "ai",
    "nginx": "nginx",
    "redis-server": "redis",
}


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


def _stat_fields(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def services_under(root_pid: int) -> dict[int, tuple[str, list[str]]]:
    """Every process under `root_pid` (itself included): its service (SERVICES, else "other") and its /proc stat
    fields."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (fields := _stat_fields(entry)) is None:
            continue
        parents[int(entry)] = int(fields[1])
        stats[int(entry)] = fields
    found: dict[int, tuple[str, list[str]]] = {}
    for pid, fields in stats.items():
        ancestor = pid
        while ancestor not in (root_pid, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor != root_pid:
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found[pid] = (next((svc for key, svc in SERVICES.items() if key == comm or key in cmdline), "other"), fields)
    return found


def cpu_by_service(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of every process under `root_pid`, summed per service."""
    totals: dict[str, float] = defaultdict(float)
    for name, fields in services_under(root_pid).values():
        totals[name] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return totals


# Seconds the stack must stay idle before a run: longer than the quiet period after which a series' thumbnail and
# metadata cache are built (pacs.tasks.THUMBNAIL_QUIET_SECONDS, pacs.metadata.METADATA_QUIET_SECONDS, 2 s), so the
# previous run's background work is done and neither peer's run pays for it.
QUIET_SECONDS = 4


def stack_quiet(root_pid: int, *, idle_share: float = 0.05, timeout: float = 90) -> None:
    """Wait until the stack used under `idle_share` of one core in each of QUIET_SECONDS seconds in a row."""
    deadline = time.monotonic() + timeout
    before = sum(cpu_by_service(root_pid).values())
    idle = 0
    while time.monotonic() < deadline and idle < QUIET_SECONDS:
        time.sleep(1)
        now = sum(cpu_by_service(root_pid).values())
        idle = idle + 1 if now - before < idle_share else 0
        before = now


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)


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


def storescp_run(files: list[Path], *, associations: int, workdir: Path) -> Run:
    """Send `files` into a fresh dcmtk storescp (--fork: one process per association, files only, no fsync)."""
    port = free_port()
    out = workdir / f"storescp-{associations}"
    out.mkdir(parents=True)
    argv = ["storescp", "--fork", "-aet", "STORESCP", "-od", str(out), str(port)]
    proc = subprocess.Popen(argv, env={**os.environ, "TCP_NODELAY": "1"}, start_new_session=True)
    try:
        time.sleep(0.5)
        os.sync()
        storescu_before = children_cpu()
        seconds = send(files, port=port, ae_title="STORESCP", associations=associations)
        cpu = {"storescu": children_cpu() - storescu_before}
        # storescp reaps the finished association processes (whose CPU then counts as its children's) only
        # when the next association arrives: one C-ECHO makes it do so.
        echo = ["echoscu", "-aec", "STORESCP", "127.0.0.1", str(port)]
        subprocess.run(echo, env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, timeout=30, check=False)
        time.sleep(0.3)
    finally:
        # Each association's process was reaped by storescp: their CPU is storescp's children time.
        fields = _stat_fields(str(proc.pid))
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    if fields:
        cpu["storescp"] = sum(int(f) for f in fields[11:15]) / CLOCK_TICKS
    return Run(seconds, cpu)


def scp_run(files: list[Path], *, associations: int, env: dict[str, str], root_pid: int) -> Run:
    stack_quiet(root_pid)
    os.sync()
    before, storescu_before = cpu_by_service(root_pid), children_cpu()
    seconds = send(files, port=int(env["DICOM_PORT"]), ae_title=env["DICOM_AE_TITLE"], associations=associations)
    after = cpu_by_service(root_pid)
    cpu = {"storescu": children_cpu() - storescu_before}
    cpu.update({name: after[name] - before.get(name, 0.0) for name in after})
    return Run(seconds, cpu)


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


def cpu_line(run: Run, n: int) -> str:
    """CPU milliseconds per instance by process, largest first."""
    parts = sorted(((ms, name) for name, s in run.cpu.items() if (ms := 1000 * s / n) >= 0.01), reverse=True)
    return " ".join(f"{name}={ms:.2f}" for ms, name in parts)


@dataclass
class Round:
    associations: int
    ours: Run
    peer: Run
    lag: float

    @property
    def ratio(self) -> float:
        return self.peer.seconds / self.ours.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both peers per association count")
    parser.add_argument("--associations", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the run's files (about 3 GB per round) instead of deleting them at the end: deleting them slows "
        "every file creation on this file system for the next 5 minutes, so back-to-back runs should keep them",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="noctis-bench-", dir=ROOT / "var" if (ROOT / "var").exists() else None))
    n = args.instances
    plan = [(a, r) for a in args.associations for r in range(args.rounds)]
    print(f"generating {len(plan)} x {n} CT instances of {args.size}x{args.size}x16 bit ...", flush=True)
    # A new study for every round (the SCP must see new instances each time); storescp gets the same files.
    series = {(a, r): ct_series(work / f"data-{a}-{r}", n, size=args.size) for a, r in plan}
    megabytes = sum(f.stat().st_size for f in series[plan[0]]) / 1e6
    from pydicom import dcmread

    rounds: list[Round] = []
    try:
        stack = stack_launch(work, timeout=300)
        try:
            env = stack.env
            for (associations, r), files in series.items():
                peer_first = r % 2 == 0
                if peer_first:
                    stack_quiet(stack.proc.pid)
                    peer = storescp_run(files, associations=associations, workdir=work / f"r{r}")
                ours = scp_run(files, associations=associations, env=env, root_pid=stack.proc.pid)
                study_uid = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
                lag = index_lag(env["DATABASE_URL"], study_uid, len(files))
                if not peer_first:
                    stack_quiet(stack.proc.pid)
                    peer = storescp_run(files, associations=associations, workdir=work / f"r{r}")
                rounds.append(Round(associations, ours, peer, lag))
                order = "storescp first" if peer_first else "NoctisPro first"
                print(
                    f"  {associations} assoc round {r + 1} ({order}): NoctisPro {n / ours.seconds:.0f}/s, "
                    f"storescp {n / peer.seconds:.0f}/s, ratio {peer.seconds / ours.seconds:.2f}",
                    flush=True,
                )
        finally:
            stack.stop()
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{n} instances ({megabytes:.0f} MB) per run, storescu -> 127.0.0.1 (TCP_NODELAY=1), {args.rounds} rounds")
    header = ("assoc", "NoctisPro inst/s", "MB/s", "storescp inst/s", "MB/s", "ratio", "rounds' ratios", "index lag")
    print("{:>5} {:>17} {:>7} {:>16} {:>7} {:>6}  {:<18} {:>10}".format(*header))
    for associations in args.associations:
        mine = [r for r in rounds if r.associations == associations]
        ours_s = statistics.median(r.ours.seconds for r in mine)
        peer_s = statistics.median(r.peer.seconds for r in mine)
        ratios = " ".join(f"{r.ratio:.2f}" for r in mine)
        print(
            f"{associations:>5} {n / ours_s:>17.0f} {megabytes / ours_s:>7.1f} {n / peer_s:>16.0f} "
            f"{megabytes / peer_s:>7.1f} {statistics.median(r.ratio for r in mine):>6.2f}  {ratios:<18} "
            f"{max(r.lag for r in mine):>9.2f}s"
        )
    print("rates: medians of the rounds; ratio = median of the rounds' NoctisPro rate / storescp rate")
    print("(NoctisPro: fsync + receipt + index; storescp: files only, no fsync)")
    print("index lag = last C-STORE response -> last instance indexed (the worst round)")
    print("\nCPU ms per instance during each run (2 cores shared by all):")
    for r in rounds:
        print(f"  {r.associations} assoc NoctisPro: {cpu_line(r.ours, n)}")
        print(f"  {r.associations} assoc storescp:  {cpu_line(r.peer, n)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
