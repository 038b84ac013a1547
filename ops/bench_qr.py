"""`make bench-qr`: DICOM query/retrieve on port 11112, beside Orthanc on the same data in the same run.

1. A small set of real files (BENCH_QR_STUDIES studies x 100 instances of BENCH_QR_PIXELS^2 x 16 bit) goes into a
   private NoctisPro stack (`python -m ops.run`, as `make run`) and a private Orthanc (ops.orthanc), both on
   loopback, each by storescu.
2. C-FIND study-level latency: one pynetdicom SCU association per server, the same BENCH_QR_FINDS queries in the
   same order (patient-name prefix, patient ID, one-month date range, a StudyInstanceUID, modality + date),
   p50/p99 of each C-FIND from request to final response, matches compared between the servers.
3. C-MOVE throughput: every study of the set moved to a dcmtk storescp started here (registered as a node in
   NoctisPro with `manage.py dicom_node add`, and as a modality in Orthanc over its REST API), one C-MOVE per
   study, instances/s over the whole set.
4. Then the index is filled to BENCH_INSTANCES (default 1,000,000) synthetic instances (ops.index_fill) and the
   C-FIND latency is measured again on NoctisPro alone (Orthanc would need a million files sent to it).

Figures, not pass/fail; ratios are NoctisPro / Orthanc (latency: below 1 is faster; throughput: above 1 is
faster). `--quick` is a smoke run. The JSON report lands in var/bench-qr-<time>.json; the work directory under
var/ is removed after a complete run and kept after a failure. Two cores shared with
everything else on this machine: expect noise, compare ratios within one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove

from ops.bench import send
from ops.bench_dicomweb import month_range, small_set_generate, stack_quiet_wait
from ops.index_fill import fill_plan, index_fill
from ops.launch import Launched, free_port, stack_launch
from ops.loadgen import percentile
from ops.orthanc import ORTHANC_AE_TITLE, SENDER_AE_TITLE, Orthanc, orthanc_start

ROOT = Path(__file__).resolve().parent.parent
DEST_AE_TITLE = "QRBENCHDEST"
# The generated index has accession numbers longer than SH allows; reading them back must not warn per match.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


@dataclass(frozen=True)
class Settings:
    studies: int
    pixels: int
    finds: int
    instances: int
    quick: bool


def settings_read(environ: dict[str, str], *, quick: bool) -> Settings:
    def number(name: str, default: int) -> int:
        value = environ.get(name, "")
        try:
            return int(value) if value else default
        except ValueError:
            raise SystemExit(f"{name}={value!r} is not a whole number") from None

    return Settings(
        studies=number("BENCH_QR_STUDIES", 2 if quick else 10),
        pixels=number("BENCH_QR_PIXELS", 64 if quick else 256),
        finds=number("BENCH_QR_FINDS", 40 if quick else 300),
        instances=number("BENCH_INSTANCES", 20_000 if quick else 1_000_000),
        quick=quick,
    )


@dataclass(frozen=True)
class Peer:
    name: str
    port: int
    ae_title: str


def _rows(database_url: str, statement: str, *params: Any) -> list[Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(statement, params or None)]


def _count(database_url: str, table: str) -> int:
    statement = {"pacs_instance": "SELECT count(*) FROM pacs_instance"}[table]
    return int(_rows(database_url, statement)[0])


def find_identifiers(
    database_url: str, *, count: int, studies: list[str] | None = None, seed: int = 5
) -> list[Dataset]:
    """`count` study-level identifiers with values that exist in the index, the kinds a workstation sends; with
    `studies`, values of those studies only (what both servers hold, not what the stack derived, like AI reports)."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible sample)
    scope = "WHERE (%s::text[] IS NULL OR st.study_instance_uid = ANY(%s::text[]))"
    joined = f"FROM pacs_study st JOIN pacs_patient p ON p.id = st.patient_id {scope}"
    surnames = sorted(set(_rows(database_url, f"SELECT split_part(p.patient_name, '^', 1) {joined}", studies, studies)))
    patient_ids = sorted(set(_rows(database_url, f"SELECT p.patient_id {joined}", studies, studies)))
    months = sorted(set(_rows(database_url, f"SELECT to_char(st.study_date, 'YYYYMM') {joined}", studies, studies)))
    uids = sorted(_rows(database_url, f"SELECT st.study_instance_uid {joined}", studies, studies))
    kinds: list[Callable[[Dataset], None]] = [
        lambda ds: setattr(ds, "PatientName", rng.choice(surnames) + "*"),
        lambda ds: setattr(ds, "PatientID", rng.choice(patient_ids)),
        lambda ds: setattr(ds, "StudyDate", month_range(rng.choice(months))),
        lambda ds: setattr(ds, "StudyInstanceUID", rng.choice(uids)),
        lambda ds: (setattr(ds, "ModalitiesInStudy", "CT"), setattr(ds, "StudyDate", month_range(rng.choice(months)))),
    ]
    out = []
    for i in range(count):
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for keyword in ("PatientName", "PatientID", "StudyDate", "StudyInstanceUID", "ModalitiesInStudy",
                        "AccessionNumber", "StudyDescription", "NumberOfStudyRelatedInstances"):  # fmt: skip
            setattr(ds, keyword, "")
        kinds[i % len(kinds)](ds)
        out.append(ds)
    return out


def associate(peer: Peer, context: str) -> Any:
    """A pynetdicom association with Nagle off: a request goes out as two PDUs (command, identifier), and with Nagle
    on each would wait for the delayed ACK of the first (~40 ms) on both servers alike."""
    ae = AE(ae_title=SENDER_AE_TITLE)
    ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise RuntimeError(f"{peer.name}: association refused")
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return assoc


def finds_measure(peer: Peer, identifiers: list[Dataset]) -> dict[str, Any]:
    """Each C-FIND timed from request to final response on one association; latencies and match counts. A query
    without a final status (the peer aborted or went silent) counts as a failure, with -1 matches, and the next one
    goes on a new association."""
    assoc = associate(peer, StudyRootQueryRetrieveInformationModelFind)
    latencies, matches, failures, reassociations = [], [], 0, 0
    try:
        for identifier in identifiers:
            if not assoc.is_established:
                assoc = associate(peer, StudyRootQueryRetrieveInformationModelFind)
                reassociations += 1
            start = time.perf_counter()
            statuses = [
                status.get("Status")
                for status, _ in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
            ]
            elapsed = (time.perf_counter() - start) * 1000
            if statuses[-1:] != [0x0000]:
                failures += 1
                matches.append(-1)
                continue
            latencies.append(elapsed)
            matches.append(sum(1 for s in statuses if s in (0xFF00, 0xFF01)))
    finally:
        if assoc.is_established:
            assoc.release()
    return {
        "finds": len(latencies),
        "failures": failures,
        "reassociations": reassociations,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_matches": round(sum(m for m in matches if m >= 0) / max(1, len(latencies)), 1),
        "matches": matches,
    }


def moves_measure(peer: Peer, study_uids: list[str], expected: int) -> dict[str, Any]:
    """One C-MOVE per study to the storescp; instances/s over the whole set, from the final statuses' counts."""
    assoc = associate(peer, StudyRootQueryRetrieveInformationModelMove)
    completed = failed = 0
    start = time.perf_counter()
    try:
        for uid in study_uids:
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = uid
            responses = list(assoc.send_c_move(ds, DEST_AE_TITLE, StudyRootQueryRetrieveInformationModelMove))
            final = responses[-1][0]
            if final.Status != 0x0000:
                raise RuntimeError(f"{peer.name}: C-MOVE of {uid} answered {final.Status:#06x}")
            completed += int(final.get("NumberOfCompletedSuboperations", 0))
            failed += int(final.get("NumberOfFailedSuboperations", 0))
    finally:
        assoc.release()
    seconds = time.perf_counter() - start
    if completed != expected:
        raise RuntimeError(f"{peer.name}: {completed} sub-operations completed, {expected} expected")
    return {
        "instances": completed,
        "failed": failed,
        "seconds": round(seconds, 2),
        "per_s": round(completed / seconds, 1),
    }


def storescp_start(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The move destination: dcmtk storescp writing every file it receives (no fsync), one process."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "-aet", DEST_AE_TITLE, "-od", str(directory), str(port)],
        env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    return proc, port


def manage(stack: Launched, *args: str) -> None:
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "manage.py", *args], cwd=ROOT, env=stack.env, check=True,
        capture_output=True,
    )  # fmt: skip


def wait_for(what: str, check: Callable[[], bool], *, timeout: float) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)
    return time.perf_counter() - start


def ratio(ours: float, theirs: float) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few queries")
    args = parser.parse_args()
    s = settings_read(dict(os.environ), quick=args.quick)
    report: dict[str, Any] = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": s.__dict__,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="noctis-bench-qr-", dir=var))
    stack: Launched | None = None
    orthanc: Orthanc | None = None
    storescp: subprocess.Popen[bytes] | None = None
    try:
        print(f"generating {s.studies} studies x 100 instances of {s.pixels}x{s.pixels}x16 bit ...", flush=True)
        files = small_set_generate(work / "data", studies=s.studies, size=s.pixels)
        n = len(files)
        print(f"starting a NoctisPro stack, Orthanc and a storescp under {work} ...", flush=True)
        (work / "stack").mkdir()
        stack = stack_launch(work / "stack", timeout=300)
        orthanc = orthanc_start(work / "orthanc")
        report["peer"] = orthanc.version()
        database_url = stack.env["DATABASE_URL"]
        noctis = Peer("noctis", int(stack.env["DICOM_PORT"]), stack.env["DICOM_AE_TITLE"])
        peer = Peer("orthanc", orthanc.dicom_port, ORTHANC_AE_TITLE)
        storescp, dest_port = storescp_start(work / "received")
        manage(stack, "dicom_node", "add", "bench-dest", DEST_AE_TITLE, "127.0.0.1", str(dest_port))
        httpx.put(
            f"{orthanc.base_url}/modalities/benchdest",
            json={"AET": DEST_AE_TITLE, "Host": "127.0.0.1", "Port": dest_port},
            timeout=10,
        ).raise_for_status()

        send(files, port=noctis.port, ae_title=noctis.ae_title, associations=4)
        wait_for("NoctisPro to index the set", lambda: _count(database_url, "pacs_instance") >= n, timeout=600)
        send(files, port=peer.port, ae_title=ORTHANC_AE_TITLE, associations=4)
        if orthanc.instance_count() != n:
            raise RuntimeError(f"Orthanc holds {orthanc.instance_count()} instances, not {n}")
        # Thumbnails and AI analyses of the new set would compete with the measurements: wait them out.
        report["background_done"] = stack_quiet_wait(database_url, timeout=300)
        study_uids = sorted({pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in files[::100]})
        identifiers = find_identifiers(database_url, count=s.finds, studies=study_uids)

        print(f"C-FIND, study level: {s.finds} queries on one association per server", flush=True)
        finds = {p.name: finds_measure(p, identifiers) for p in (noctis, peer)}
        ours, theirs = finds["noctis"].pop("matches"), finds["orthanc"].pop("matches")
        agree = ours == theirs
        # Where the two servers' matching differs, say on which identifiers (the first few).
        finds["differences"] = [
            {"identifier": {e.keyword: str(e.value) for e in identifier if e.value}, "noctis": a, "orthanc": b}
            for identifier, a, b in zip(identifiers, ours, theirs, strict=True)
            if a != b
        ][:5]
        finds["ratio_p50"] = ratio(finds["noctis"]["p50_ms"], finds["orthanc"]["p50_ms"])
        finds["ratio_p99"] = ratio(finds["noctis"]["p99_ms"], finds["orthanc"]["p99_ms"])
        finds["same_matches"] = agree
        report["find_small"] = finds

        print(f"C-MOVE: {len(study_uids)} studies ({n} instances) to storescp, one C-MOVE per study", flush=True)
        moves = {p.name: moves_measure(p, study_uids, n) for p in (noctis, peer)}
        moves["ratio_per_s"] = ratio(moves["noctis"]["per_s"], moves["orthanc"]["per_s"])
        report["move"] = moves
        orthanc.stop()
        orthanc = None

        plan = fill_plan(instances=max(100, s.instances - n))
        print(f"filling the index with {plan.instances} generated instances ...", flush=True)
        timings = index_fill(database_url, plan, run=str(int(time.time()) % 10**9), progress=lambda _: None)
        total = _count(database_url, "pacs_instance")
        identifiers = find_identifiers(database_url, count=s.finds)
        large = finds_measure(noctis, identifiers)
        large.pop("matches")
        report["find_large"] = {"instances": total, "fill_seconds": {k: round(v, 1) for k, v in timings.items()},
                                "noctis": large}  # fmt: skip
    finally:
        if storescp is not None:
            storescp.terminate()
            storescp.wait(timeout=10)
        if orthanc is not None:
            orthanc.stop()
        if stack is not None:
            stack.stop()
    report["load_average_at_end"] = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)  # the files, the stack's database with its 1M rows: ~0.5 GB
    out = var / f"bench-qr-{int(time.time())}.json"
    out.write_text(json.dumps(report, indent=2))
    f, m, lg = report["find_small"], report["move"], report["find_large"]
    print()
    print(f"{'':34}{'NoctisPro':>12}{'Orthanc':>12}{'ratio':>8}")
    print(f"{'C-FIND study p50 (ms)':34}{f['noctis']['p50_ms']:>12}{f['orthanc']['p50_ms']:>12}{f['ratio_p50']!s:>8}")
    print(f"{'C-FIND study p99 (ms)':34}{f['noctis']['p99_ms']:>12}{f['orthanc']['p99_ms']:>12}{f['ratio_p99']!s:>8}")
    print(f"{'C-MOVE to storescp (instances/s)':34}{m['noctis']['per_s']:>12}{m['orthanc']['per_s']:>12}"
          f"{m['ratio_per_s']!s:>8}")  # fmt: skip
    print(f"same C-FIND matches on both: {f['same_matches']}; failed C-FINDs: NoctisPro {f['noctis']['failures']}, "
          f"Orthanc {f['orthanc']['failures']}")  # fmt: skip
    print(f"at {lg['instances']} instances, NoctisPro C-FIND study p50 {lg['noctis']['p50_ms']} ms, "
          f"p99 {lg['noctis']['p99_ms']} ms ({lg['noctis']['failures']} failed)")  # fmt: skip
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
