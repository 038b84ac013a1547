"""Start a whole private stack the way `make run` does (`python -m ops.run`), on free loopback ports with its own
var/ and .env: what the end-to-end tests and `make bench` run against."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ops.envfile import envfile_read
from ops.run import DEFAULT_PORTS, ROOT

READY_BANNER = "NoctisPro is running"
# What the stack must choose itself. A developer's .env (copied into os.environ by Django's settings when the
# caller loaded them) must not leak a running stack's webhook URL, secrets or ports into this one.
NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "NOCTIS_ENV_FILE", "NOCTIS_VAR_DIR"}


class LaunchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]  # what it was given plus what it wrote to its .env
    log_path: Path

    def stop(self, timeout: float = 60) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def stack_environment(base: Path) -> dict[str, str]:
    developer_env = envfile_read(Path(os.environ.get("NOCTIS_ENV_FILE", str(ROOT / ".env"))))
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED and k not in developer_env}
    env.update({key: str(free_port()) for key in DEFAULT_PORTS})
    env.update(
        {
            "NOCTIS_ENV_FILE": str(base / ".env"),
            "NOCTIS_VAR_DIR": str(base / "var"),
            "DICOM_BIND_ADDRESS": "127.0.0.1",
            "TCP_NODELAY": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def stack_launch(base: Path, *, timeout: float = 240) -> Launched:
    """Start the stack under `base` and return once it printed its banner; LaunchError with its log's tail if not."""
    env = stack_environment(base)
    log_path = base / "stack.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    launched = Launched(proc, env, log_path)
    deadline = time.monotonic() + timeout
    while READY_BANNER not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
            launched.stop(timeout=10)
            raise LaunchError(f"the stack did not start (exit {proc.poll()}):\n{tail}")
        time.sleep(0.5)
    launched.env = {**env, **envfile_read(base / ".env")}
    return launched
