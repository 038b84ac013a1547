"""`make profile-api`: the CPU one FastAPI request costs, per query kind, and where it goes.

The latency benchmark (ops/bench_dicomweb.py) runs on a shared, loaded machine where wall-clock figures swing;
CPU time per request is steadier and is what a change to the request path moves. This script:

1. Prepares its own database (PROFILE_DATABASE_URL, default noctis_profile on the dev PostgreSQL): migrates it,
   creates a superuser and an API token, and fills the index with PROFILE_INSTANCES (20,000) generated instances
   (ops.index_fill; a second run reuses them).
2. Starts the real server as `make run` does (uvicorn fastapi_app.main:app, one worker) on a free loopback port and
   sends each query PROFILE_REQUESTS (200) times from one keep-alive client, after a warm-up. The server's CPU
   (utime + stime from /proc/<pid>/stat) over those requests / their number = CPU ms per request; the client's
   own wall p50 is printed beside it.
3. `--profile`: the same requests in this process through the ASGI app (httpx.ASGITransport) under cProfile, and
   the top functions by own time (the client's share is in there too, and labelled).

Usage: `python -m ops.profile_api [--profile] [--only SUBSTRING]`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

from ops.index_fill import fill_plan, index_fill
from ops.launch import free_port

ROOT = Path(__file__).resolve().parent.parent
USERNAME = "profile"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="noctis_pro.settings.test",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY") or "profile-api-not-a-secret",
        NOCTIS_ENV_FILE="/dev/null",
    )
    return env


def database_prepare(database_url: str, *, instances: int) -> str:
    """Migrate, make the user and a token, fill the index up to `instances`; the raw token."""
    admin_url, _, name = database_url.rpartition("/")
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    env = _env(database_url)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    make_user = (
        "from django.contrib.auth import get_user_model as g; U = g(); "
        f"U.objects.filter(username='{USERNAME}').exists() or "
        f"U.objects.create_superuser('{USERNAME}', '', 'profile-not-a-password')"
    )
    subprocess.run([*manage, "shell", "-c", make_user], cwd=ROOT, env=env, check=True)
    done = subprocess.run(
        [*manage, "create_api_token", USERNAME, "--name", "profile"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    with psycopg.connect(database_url) as conn:
        have = conn.execute("SELECT count(*) FROM pacs_instance").fetchone()[0]  # type: ignore[index]
    if have < instances:
        print(f"filling the index: {instances - have} instances")
        index_fill(database_url, fill_plan(instances=instances - have), run=str(int(time.time()) % 10**9))
    return done.stdout.strip()


def queries(database_url: str, *, seed: int = 7) -> dict[str, list[str]]:
    """Paths per query kind, with values that exist (as ops/bench_dicomweb.py asks)."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible sample)
    with psycopg.connect(database_url, autocommit=True) as conn:
        surnames = [r[0] for r in conn.execute("SELECT DISTINCT split_part(patient_name, '^', 1) FROM pacs_patient")]
        months = [r[0] for r in conn.execute("SELECT DISTINCT to_char(study_date, 'YYYYMM') FROM pacs_study")]
        uids = [r[0] for r in conn.execute("SELECT study_instance_uid FROM pacs_study ORDER BY id LIMIT 2000")]
    surnames, months, uids = (rng.sample(sorted(v), min(50, len(v))) for v in (surnames, months, uids))
    dw = "/api/v1/dicomweb"
    return {
        "health": ["/api/v1/health"],
        "studies PatientName=X* limit=100": [f"{dw}/studies?PatientName={quote(n)}*&limit=100" for n in surnames],
        "studies StudyDate=<month> limit=100": [f"{dw}/studies?StudyDate={m}01-{m}28&limit=100" for m in months if m],
        "studies ModalitiesInStudy=CT limit=100": [f"{dw}/studies?ModalitiesInStudy=CT&limit=100"],
        "studies StudyInstanceUID=": [f"{dw}/studies?StudyInstanceUID={u}" for u in uids],
        "series of a study": [f"{dw}/studies/{u}/series" for u in uids],
        "instances of a study (100)": [f"{dw}/studies/{u}/instances" for u in uids],
        "REST /studies?limit=100": ["/api/v1/studies?limit=100"],
    }


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children that have been waited for (uvicorn's workers when > 1)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLK_TCK


def _process_tree(pid: int) -> list[int]:
    out = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            out.extend(_process_tree(int(child)))
    return out


def server_measure(database_url: str, token: str, kinds: dict[str, list[str]], *, requests: int) -> None:
    port = free_port()
    env = _env(database_url)
    command = [
        *(os.environ.get("PROFILE_SERVER_COMMAND", "").split() or [str(Path(sys.executable).parent / "uvicorn")]),
        "fastapi_app.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for _ in range(200):
                try:
                    if client.get("/api/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            print(f"{'query':40} {'CPU ms/req':>10} {'wall p50':>9} {'bytes':>8}")
            for name, paths in kinds.items():
                for path in paths[:20]:  # warm-up: plans cached, code paths hot
                    client.get(path).raise_for_status()
                pids = _process_tree(server.pid)
                before = sum(_cpu_seconds(p) for p in pids)
                walls, size = [], 0
                for i in range(requests):
                    start = time.perf_counter()
                    response = client.get(paths[i % len(paths)])
                    walls.append(time.perf_counter() - start)
                    response.raise_for_status()
                    size = len(response.content)
                cpu = sum(_cpu_seconds(p) for p in pids) - before
                print(f"{name:40} {cpu * 1000 / requests:10.2f} {statistics.median(walls) * 1000:9.2f} {size:8}")
    finally:
        server.terminate()
        server.wait(10)


async def _profile_run(database_url: str, token: str, kinds: dict[str, list[str]], *, requests: int, top: int) -> None:
    os.environ.update(_env(database_url))
    from fastapi_app.main import create_app
    from fastapi_app.settings import get_settings

    app = create_app(get_settings())
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
        )
        async with client:
            for name, paths in kinds.items():
                for path in paths[:10]:
                    (await client.get(path)).raise_for_status()
                profiler = cProfile.Profile()
                cpu = time.process_time()
                profiler.enable()
                for i in range(requests):
                    (await client.get(paths[i % len(paths)])).raise_for_status()
                profiler.disable()
                cpu = time.process_time() - cpu
                print(f"\n=== {name}: {cpu * 1000 / requests:.2f} CPU ms/request in process (client included)")
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
                print("\n".join(line for line in text.getvalue().splitlines()[6:] if line.strip()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="cProfile top list per query, in process")
    parser.add_argument("--only", default="", help="only query kinds whose name contains this")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    database_url = os.environ.get("PROFILE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/noctis_profile")
    instances = int(os.environ.get("PROFILE_INSTANCES", "20000"))
    requests = int(os.environ.get("PROFILE_REQUESTS", "200"))
    token = database_prepare(database_url, instances=instances)
    kinds = {k: v for k, v in queries(database_url).items() if args.only in k and v}
    if args.profile:
        asyncio.run(_profile_run(database_url, token, kinds, requests=requests, top=args.top))
    else:
        server_measure(database_url, token, kinds, requests=requests)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
