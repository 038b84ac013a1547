"""`make test` after lint: real PostgreSQL and Redis for the tests, then `cargo test` and pytest.

Given DATABASE_URL and REDIS_URL it uses them; otherwise it starts private ones under var/test/ (fresh each run),
exactly as `make run` would, so a machine without system services runs the same tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ops import embedded
from ops.envfile import secret_token
from ops.launch import free_port
from ops.services import Service, Step
from ops.supervisor import StartError, Supervisor

ROOT = Path(__file__).resolve().parent.parent
RUST_TEST_DB = "noctis_rust_test"


def with_database(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def infra_start(var_dir: Path) -> tuple[Supervisor, dict[str, str]]:
    var_dir = var_dir.resolve()
    link = var_dir / "postgres"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    pg_port, redis_port = free_port(), free_port()
    pg_password, redis_password = secret_token(16), secret_token(16)
    data_dir = embedded.postgres_data_dir(var_dir)
    embedded.postgres_init(data_dir, password=pg_password)
    env = {
        "DATABASE_URL": embedded.postgres_url(password=pg_password, port=pg_port, dbname="noctis"),
        "REDIS_URL": embedded.redis_url(password=redis_password, port=redis_port, db=0),
    }
    plan: list[Service | Step] = [
        Service(
            "postgres",
            [*embedded.postgres_argv(data_dir, port=pg_port), "-c", "fsync=off"],  # test data is disposable
            ready_line="database system is ready to accept connections",
        ),
        Service(
            "redis",
            embedded.redis_argv(var_dir / "redis", port=redis_port, password=redis_password),
            ready_line="Ready to accept connections",
        ),
    ]
    quiet = open(var_dir / "infra.log", "w")  # noqa: SIM115 (lives as long as the run)
    supervisor = Supervisor(plan, env=dict(os.environ), cwd=ROOT, log_dir=var_dir / "log", out=quiet)
    supervisor.start()
    return supervisor, env


def run(step: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> int:
    print(f"\n=== {step}: {' '.join(argv)}", flush=True)
    return subprocess.run(argv, env=env, cwd=cwd, check=False).returncode


def main() -> int:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"  # dcmtk tools otherwise wait ~40 ms per message
    supervisor = None
    if not (env.get("DATABASE_URL") and env.get("REDIS_URL")):
        try:
            supervisor, infra_env = infra_start(ROOT / "var" / "test")
        except (StartError, embedded.EmbeddedError) as e:
            print(f"make test: cannot start test PostgreSQL/Redis: {e}", file=sys.stderr)
            return 1
        env.update(infra_env)
    try:
        python = sys.executable
        rust_db_url = with_database(env["DATABASE_URL"], RUST_TEST_DB)
        admin_url = with_database(env["DATABASE_URL"], "postgres")
        import psycopg

        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{RUST_TEST_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{RUST_TEST_DB}"')
        migrate_env = {**env, "DATABASE_URL": rust_db_url, "DJANGO_SETTINGS_MODULE": "noctis_pro.settings.test"}
        if run("migrate (Rust test DB)", [python, "manage.py", "migrate", "--noinput", "-v", "0"], migrate_env):
            return 1
        failures = []
        cargo_env = {**env, "NOCTIS_TEST_DATABASE_URL": rust_db_url}
        if run("cargo test", ["cargo", "test", "--release", "--locked"], cargo_env, ROOT / "dicom_scp_server"):
            failures.append("cargo test")
        pytest_args = [python, "-m", "pytest", "-q", "-ra", *sys.argv[1:]]
        if run("pytest", pytest_args, {**env, "DJANGO_SETTINGS_MODULE": "noctis_pro.settings.test"}):
            failures.append("pytest")
        if failures:
            print(f"\nmake test: FAILED: {', '.join(failures)}", flush=True)
            return 1
        print("\nmake test: all green", flush=True)
        return 0
    finally:
        if supervisor is not None:
            supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
