"""Private PostgreSQL and Redis under var/ (the embedded default of `make run` and `make test`).

PostgreSQL refuses to run as root, so when we are root its data directory belongs to the `postgres` system user
and its processes run through `runuser`. Both listen on 127.0.0.1 only and require a generated password.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PG_SUPERUSER = "noctis"


class EmbeddedError(RuntimeError):
    pass


def pg_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise EmbeddedError("PostgreSQL server binaries (initdb) not found: install the 'postgresql' package")


def _as_root() -> bool:
    return os.geteuid() == 0


def run_as_postgres_prefix() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if _as_root() else []


def _postgres_can_use(path: Path) -> bool:
    probe = subprocess.run([*run_as_postgres_prefix(), "test", "-x", str(path)], capture_output=True, check=False)
    return probe.returncode == 0


def postgres_data_dir(var_dir: Path) -> Path:
    """var/postgres, or (when the postgres user cannot reach var/) a private folder linked from there."""
    var_dir = var_dir.resolve()
    link = var_dir / "postgres"
    if link.is_symlink():
        return link.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    if not _as_root() or _postgres_can_use(var_dir):
        return link
    digest = hashlib.sha256(str(var_dir.resolve()).encode()).hexdigest()[:12]
    target = Path("/var/lib/noctis") / f"postgres-{digest}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(target.parent, 0o755)  # noqa: S103 (the postgres user must traverse it)
    link.symlink_to(target)
    return target


def postgres_init(data_dir: Path, *, password: str) -> None:
    """initdb once; a second `make run` reuses the cluster."""
    if (data_dir / "PG_VERSION").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    if _as_root():
        shutil.chown(data_dir, "postgres", "postgres")
    os.chmod(data_dir, 0o700)
    with tempfile.NamedTemporaryFile("w", delete=False, dir="/tmp", prefix="noctis-pw-") as pwfile:
        pwfile.write(password + "\n")
    try:
        if _as_root():
            shutil.chown(pwfile.name, "postgres", "postgres")
        subprocess.run(
            [
                *run_as_postgres_prefix(),
                str(pg_bindir() / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                PG_SUPERUSER,
                f"--pwfile={pwfile.name}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as e:
        raise EmbeddedError(f"initdb failed: {e.stderr.decode(errors='replace').strip()}") from e
    finally:
        os.unlink(pwfile.name)


def postgres_argv(data_dir: Path, *, port: int) -> list[str]:
    return [
        *run_as_postgres_prefix(),
        str(pg_bindir() / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",  # TCP on loopback only; no socket path length limits
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=256MB",
    ]


def postgres_url(*, password: str, port: int, dbname: str) -> str:
    return f"postgres://{PG_SUPERUSER}:{password}@127.0.0.1:{port}/{dbname}"


def postgres_create_database(*, admin_url: str, dbname: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def redis_argv(data_dir: Path, *, port: int, password: str) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        shutil.which("redis-server") or "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",  # queued Celery work survives a restart
        "--save",
        "",
        "--requirepass",
        password,
        "--daemonize",
        "no",
    ]


def redis_url(*, password: str, port: int, db: int = 0) -> str:
    return f"redis://:{password}@127.0.0.1:{port}/{db}"
