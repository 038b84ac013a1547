"""Fixtures `stack` and `api_token`: the real stack, started the way `make run` starts it (python -m ops.run),
with its embedded PostgreSQL and Redis, on free loopback ports and a private var/ and .env. One per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops.launch import LaunchError, stack_launch

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        launched = stack_launch(tmp_path_factory.mktemp("stack"), timeout=START_TIMEOUT_SECONDS)
    except LaunchError as e:
        pytest.fail(str(e))
    chosen = launched.env
    yield Stack(
        base_url=f"http://127.0.0.1:{chosen['NOCTIS_HTTP_PORT']}",
        dicom_port=int(chosen["DICOM_PORT"]),
        ae_title=chosen["DICOM_AE_TITLE"],
        admin_user=chosen["NOCTIS_ADMIN_USER"],
        admin_password=chosen["NOCTIS_ADMIN_PASSWORD"],
        env=launched.env,
        log_path=launched.log_path,
        proc=launched.proc,
    )
    launched.stop()


@pytest.fixture(scope="session")
def api_token(stack: Stack) -> str:
    token = stack.manage("create_api_token", stack.admin_user).stdout.strip()
    assert token, "create_api_token printed no token"
    return token
