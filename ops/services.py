"""The process table: every service docker-compose.yml names, with the command `make run` starts it with.

tests/integration/test_compose.py checks that each compose service's command is the one listed here.
"""

from __future__ import annotations

import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops import embedded


@dataclass
class Service:
    name: str  # as in docker-compose.yml
    argv: list[str]
    port_env: str | None = None  # the variable that sets its port, for "port in use" messages
    ready: Callable[[], bool] | None = None  # polled until true
    ready_line: str | None = None  # or: a line the service prints when it is ready
    ready_timeout: float = 90.0
    stop_signal: int = signal.SIGTERM
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Step:
    """A one-shot command between services (migrate, collectstatic, ...). Its failure stops the start."""

    name: str
    argv: list[str]


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own loopback URL)
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return check


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def scp_binary(root: Path) -> str:
    return str(root / "dicom_scp_server" / "target" / "release" / "dicom_scp_server")


def stack_plan(
    *,
    root: Path,
    var_dir: Path,
    env: dict[str, str],
    embedded_postgres: bool,
    embedded_redis: bool,
    reset_admin_password: bool = False,
) -> list[Service | Step]:
    """Start order: data stores, schema, the web tier, the SCP, the workers, then nginx in front."""
    python = sys.executable
    manage = [python, str(root / "manage.py")]
    plan: list[Service | Step] = []
    if embedded_postgres:
        plan.append(
            Service(
                "postgres",
                embedded.postgres_argv(embedded.postgres_data_dir(var_dir), port=int(env["NOCTIS_PG_PORT"])),
                port_env="NOCTIS_PG_PORT",
                ready_line="database system is ready to accept connections",
                stop_signal=signal.SIGINT,  # fast shutdown: do not wait for clients
            )
        )
        plan.append(Step("createdb", [python, "-m", "ops.createdb"]))
    if embedded_redis:
        plan.append(
            Service(
                "redis",
                embedded.redis_argv(
                    var_dir / "redis", port=int(env["NOCTIS_REDIS_PORT"]), password=env["NOCTIS_REDIS_PASSWORD"]
                ),
                port_env="NOCTIS_REDIS_PORT",
                ready_line="Ready to accept connections",
            )
        )
    plan += [
        Step("migrate", [*manage, "migrate", "--noinput"]),
        Step("collectstatic", [*manage, "collectstatic", "--noinput", "--verbosity", "0"]),
        # A password given in the environment is applied; a generated one is only set when the admin is created,
        # so a password changed in the UI survives the next `make run`.
        Step(
            "admin",
            [*manage, "ensure_admin", "--username", env.get("NOCTIS_ADMIN_USER", "admin")]
            + (["--reset"] if reset_admin_password else []),
        ),
        Service(
            "django",
            [
                venv_bin("gunicorn"),
                "noctis_pro.wsgi:application",
                "--bind",
                f"127.0.0.1:{env['DJANGO_PORT']}",
                "--workers",
                env.get("DJANGO_WORKERS", "2"),
                "--threads",
                "4",
                "--timeout",
                "120",
                "--access-logfile",
                "-",
                "--no-control-socket",  # one per user by default: two stacks on a machine would collide
            ],
            port_env="DJANGO_PORT",
            ready=http_ok(f"http://127.0.0.1:{env['DJANGO_PORT']}/health/"),
        ),
        Service(
            "fastapi",
            [
                venv_bin("uvicorn"),
                "fastapi_app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                env["FASTAPI_PORT"],
                "--proxy-headers",
                "--forwarded-allow-ips",
                "127.0.0.1",
                # One process per core: a request is mostly Python CPU (uvloop and httptools come with
                # uvicorn[standard] and are picked up by default).
                "--workers",
                env.get("FASTAPI_WORKERS", "2"),
            ],
            port_env="FASTAPI_PORT",
            ready=http_ok(f"http://127.0.0.1:{env['FASTAPI_PORT']}/api/v1/health"),
        ),
        Service(
            "rust_scp",
            [scp_binary(root)],
            port_env="DICOM_PORT",
            ready=http_ok(f"http://127.0.0.1:{env['SCP_HTTP_PORT']}/health"),
        ),
        Service(
            "celery_worker",
            [
                venv_bin("celery"),
                "-A",
                "noctis_pro",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                env.get("CELERY_CONCURRENCY", "2"),
                "-n",
                "worker@%h",
            ],
            ready_line="ready.",
        ),
        Service(
            "celery_beat",
            [
                venv_bin("celery"),
                "-A",
                "noctis_pro",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(var_dir / "celerybeat-schedule"),
            ],
            ready_line="beat: Starting",
        ),
        Service("ai_processor", [*manage, "process_ai_analyses", "--continuous"]),
        Service(
            "nginx",
            ["nginx", "-e", "stderr", "-p", str(var_dir / "nginx"), "-c", str(var_dir / "nginx" / "nginx.conf")],
            port_env="NOCTIS_HTTP_PORT",
            ready=http_ok(f"http://127.0.0.1:{env['NOCTIS_HTTP_PORT']}/api/v1/health"),
            stop_signal=signal.SIGQUIT,  # graceful: finish requests in flight
        ),
    ]
    return plan
