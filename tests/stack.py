"""Fixtures `stack` and `api_token`: the real stack, started the way `make run` starts it (python -m ops.run),
with its embedded PostgreSQL and Redis, on free loopback ports and a private var/ and .env. One per session."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.envfile import envfile_read
from ops.run import DEFAULT_PORTS
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
READY_BANNER = "NoctisPro is running"
START_TIMEOUT_SECONDS = 240


@dataclass
class Stack:
    base_url: str
    dicom_port: int
    ae_title: str
    admin_user: str
    admin_password: str
    env: dict[str, str]  # what `make run` wrote to .env, plus the environment given to it
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws/"

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`python manage.py ...` in a second terminal: it reads the stack's .env and talks to the stack."""
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=check
        )

    @property
    def storage_root(self) -> Path:
        return Path(self.env["STORAGE_ROOT"])

    def signal_service(self, name: str, signum: int) -> None:
        """Signal a service's whole process group (gunicorn's workers too), as ops would."""
        pid = int((Path(self.env["NOCTIS_VAR_DIR"]) / "log" / f"{name}.pid").read_text())
        os.killpg(pid, signum)

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# What the stack must choose itself. Django's settings (loaded by pytest-django) copy the developer's .env into
# os.environ; a `make run` stack's webhook URL, secrets or ports leaking into the test stack would break it.
NOT_INHERITED = {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "NOCTIS_ENV_FILE", "NOCTIS_VAR_DIR"}


def _stack_environment(base: Path) -> dict[str, str]:
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
            "DJANGO_WORKERS": "2",
        }
    )
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stack")
    env = _stack_environment(base)
    log_path = base / "stack.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while READY_BANNER not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            pytest.fail(f"the stack did not start (exit {proc.poll()}):\n{tail}")
        time.sleep(0.5)
    chosen = envfile_read(base / ".env")
    full_env = {**env, **chosen}
    yield Stack(
        base_url=f"http://127.0.0.1:{chosen['NOCTIS_HTTP_PORT']}",
        dicom_port=int(chosen["DICOM_PORT"]),
        ae_title=chosen["DICOM_AE_TITLE"],
        admin_user=chosen["NOCTIS_ADMIN_USER"],
        admin_password=chosen["NOCTIS_ADMIN_PASSWORD"],
        env=full_env,
        log_path=log_path,
        proc=proc,
    )
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def api_token(stack: Stack) -> str:
    token = stack.manage("create_api_token", stack.admin_user).stdout.strip()
    assert token, "create_api_token printed no token"
    return token
