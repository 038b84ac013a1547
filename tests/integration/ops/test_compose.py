"""docker-compose.yml, checked statically (no Docker engine here) against what `make run` really starts."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from ops.services import Service, stack_plan

ROOT = Path(__file__).resolve().parents[3]
SECRETS = {
    "NOCTIS_PG_PASSWORD": "pg-secret",
    "NOCTIS_REDIS_PASSWORD": "redis-secret",
    "DJANGO_SECRET_KEY": "k" * 10 + "0123456789abcdefghijklmnopqrstuvwxyz",
    "WEBHOOK_SECRET": "hook-secret",
}
DESIGN_SERVICES = {"nginx", "django", "fastapi", "rust_scp", "postgres", "redis", "celery_worker", "ai_processor"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert shutil.which("docker-compose"), "docker-compose (Debian package) is required: make test installs it"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / ".env"  # a developer's .env (written by make run) must not satisfy the check
        empty.write_text("")
        argv = ["docker-compose", "--project-directory", str(ROOT), "--env-file", str(empty)]
        return subprocess.run(
            [*argv, "-f", str(ROOT / "docker-compose.yml"), "config"],
            env={**clean, **env}, capture_output=True, text=True, check=False, cwd=scratch,
        )  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def plan_by_name(tmp_path: Path) -> dict[str, Service]:
    env = {
        "NOCTIS_PG_PORT": "1", "NOCTIS_REDIS_PORT": "2", "NOCTIS_REDIS_PASSWORD": "x", "DJANGO_PORT": "3",
        "FASTAPI_PORT": "4", "SCP_HTTP_PORT": "5", "NOCTIS_HTTP_PORT": "6",
    }  # fmt: skip
    plan = stack_plan(root=ROOT, var_dir=tmp_path, env=env, embedded_postgres=True, embedded_redis=True)
    return {item.name: item for item in plan if isinstance(item, Service)}


def command_head(argv: list[str]) -> list[str]:
    """Program and positional words up to the first --option (single-dash options and their values skipped),
    with paths and the privilege wrapper removed: what must agree between compose and make run."""
    if argv[:1] == ["runuser"]:
        argv = argv[argv.index("--") + 1 :]
    head: list[str] = []
    words = iter(argv)
    for word in words:
        if word.startswith("--"):
            break
        if word.startswith("-"):
            next(words, None)
            continue
        head.append(Path(word).name if "/" in word else word)
    if head and head[0].startswith("python"):
        head[0] = "python"
    return head


def test_compose_config_is_valid_and_names_every_design_service(compose: dict) -> None:
    assert set(compose["services"]) >= DESIGN_SERVICES


def test_compose_refuses_to_render_without_secrets() -> None:
    result = compose_config({k: v for k, v in SECRETS.items() if k != "WEBHOOK_SECRET"})
    assert result.returncode != 0
    assert "WEBHOOK_SECRET" in result.stderr


def test_every_compose_command_is_one_make_run_starts(compose: dict, tmp_path: Path) -> None:
    plan = plan_by_name(tmp_path)
    assert set(compose["services"]) == set(plan), "compose and make run must start the same services"
    for name, service in compose["services"].items():
        command = service.get("command")
        assert command, f"{name} has no explicit command in docker-compose.yml"
        words = shlex.split(command) if isinstance(command, str) else list(command)
        assert command_head(words) == command_head(plan[name].argv), name
    assert "--continuous" in plan["ai_processor"].argv
    for name in ("celery_worker", "celery_beat"):
        assert "noctis_pro" in compose["services"][name]["command"]
        assert "noctis_pro" in plan[name].argv


def test_long_running_services_have_health_checks(compose: dict) -> None:
    for name in ("postgres", "redis", "django", "fastapi", "celery_worker", "nginx"):
        assert "healthcheck" in compose["services"][name], name


def test_application_images_run_as_non_root() -> None:
    for dockerfile in ("Dockerfile.django", "Dockerfile.fastapi", "dicom_scp_server/Dockerfile"):
        text = (ROOT / dockerfile).read_text()
        assert text.count("FROM ") >= 2, f"{dockerfile} is multi-stage"
        user_lines = [line for line in text.splitlines() if line.startswith("USER ")]
        assert user_lines, f"{dockerfile} sets no USER"
        assert user_lines[-1].split()[1] not in {"root", "0"}, dockerfile


def test_env_example_names_every_variable_compose_interpolates() -> None:
    example = (ROOT / ".env.example").read_text()
    compose_text = (ROOT / "docker-compose.yml").read_text()
    import re

    names = set(re.findall(r"\$\{([A-Z_]+)", compose_text))
    missing = {n for n in names if f"{n}=" not in example and f"# {n}=" not in example}
    assert not missing, f".env.example does not mention {sorted(missing)}"
