"""Where one stored instance's time goes: the stack alone, without the peer `make bench` compares it with.

Starts a private stack (as the end-to-end tests do), sends `--instances` CT instances of 512x512x16 bit over
`--associations` parallel storescu processes to 127.0.0.1, and prints for each of `--rounds` rounds:

- instances/s;
- CPU ms per instance by service (the same split as `make bench`);
- context switches per instance by service: on a VM each wake-up of a thread is dear, so a change to the store
  path shows here before it shows in the rate;
- the per-store phases from the SCP's `C-STORE stored` log lines (write, fsync, parse, place; p50 / p90).

Each round sends its own study (a resent instance would take the duplicate path). The generated files are kept
in `--data`, one folder per round, and reused by later runs (the stack is new each run, so the same files are new
instances to it). Nothing is deleted at the end: a deletion slows every file creation on ext4 without a journal
for the next 5 minutes (see ops/bench.py); the run's folder is printed for you to remove.

Usage: `python -m ops.profile_ingest [--associations 4] [--rounds 2] [--instances 2000]`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from ops.bench import ROOT, cpu_line, ct_series, scp_run, services_under, stack_quiet
from ops.launch import stack_launch

PHASES = ("recv_us", "write", "fsync", "parse", "place")
PHASE_RE = re.compile(r"\b(recv_us|write|fsync|parse|place)=(\d+)(?:us)?\b")


def switches_by_service(root_pid: int) -> dict[str, int]:
    """Context switches (voluntary + involuntary, every thread) so far of the processes under `root_pid`, per
    service. Threads that have exited are not counted; the SCP's and PostgreSQL's live for the whole run."""
    totals: dict[str, int] = defaultdict(int)
    for pid, (name, _) in services_under(root_pid).items():
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                    if "ctxt_switches:" in line:
                        totals[name] += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return totals


def phases_summary(log_lines: list[str]) -> dict[str, tuple[int, int]]:
    """p50 and p90 in µs of each phase over the `C-STORE stored` lines."""
    values: dict[str, list[int]] = {name: [] for name in PHASES}
    for line in log_lines:
        if "C-STORE stored" not in line:
            continue
        for name, value in PHASE_RE.findall(line):
            values[name].append(int(value))
    out = {}
    for name, series in values.items():
        if series:
            ordered = sorted(series)
            out[name] = (ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.9)])
    return out


def study_files(folder: Path, n: int) -> list[Path]:
    """`n` instances of one study in `folder`, generated there unless an earlier run left them."""
    files = sorted(folder.glob("*.dcm"))[:n]
    if len(files) < n:
        print(f"generating {n} CT instances in {folder} ...", flush=True)
        files = ct_series(folder, n)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "profile-ingest-data")
    args = parser.parse_args()
    n = args.instances
    studies = [study_files(args.data / f"round-{r + 1}", n) for r in range(args.rounds)]
    (ROOT / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="profile-ingest-", dir=ROOT / "var"))
    stack = stack_launch(work, timeout=300)
    log_path = work / "var" / "log" / "rust_scp.log"
    try:
        for r, files in enumerate(studies):
            log_from = log_path.stat().st_size if log_path.exists() else 0
            # Counted from a quiet stack; scp_run waits for 4 more quiet seconds (a few hundred switches, well
            # under 1% of a run's).
            stack_quiet(stack.proc.pid)
            switches = switches_by_service(stack.proc.pid)
            run = scp_run(files, associations=args.associations, env=stack.env, root_pid=stack.proc.pid)
            switched = switches_by_service(stack.proc.pid)
            per_instance = {name: (count - switches.get(name, 0)) / n for name, count in switched.items()}
            per_instance = {name: v for name, v in sorted(per_instance.items(), key=lambda kv: -kv[1]) if v >= 0.1}
            time.sleep(0.5)  # the SCP's last log lines
            with open(log_path, errors="replace") as log:
                log.seek(log_from)
                phases = phases_summary(log.readlines())
            print(f"round {r + 1}: {n / run.seconds:.0f} inst/s over {args.associations} associations")
            print(f"  CPU ms per instance: {cpu_line(run, n)}")
            print("  context switches per instance: " + " ".join(f"{k}={v:.1f}" for k, v in per_instance.items()))
            print("  phases µs p50/p90: " + " ".join(f"{k}={p50}/{p90}" for k, (p50, p90) in phases.items()))
    finally:
        stack.stop()
    print(f"kept: {work} (remove it when done; see the docstring for why it is not removed here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
