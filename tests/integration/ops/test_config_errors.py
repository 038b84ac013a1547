"""A missing or wrong environment value stops each Python service at start with one line saying which and why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
STRONG_KEY = "Zx8-" + "q1W2e3R4t5Y6u7I8o9P0a1S2d3F4g5H6j7K8l9Z0x1C2v3B4n5M6"


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SECRET_KEY", "WEBHOOK_SECRET", "DJANGO_SETTINGS_MODULE", "NOCTIS_ENV_FILE"}
    }
    full = {**base, "NOCTIS_ENV_FILE": "/dev/null", **env}
    return subprocess.run(argv, cwd=ROOT, env=full, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("settings", "env", "expected"),
    [
        ("local", {"WEBHOOK_SECRET": "w"}, "DJANGO_SECRET_KEY is not set"),
        ("local", {"DJANGO_SECRET_KEY": STRONG_KEY}, "WEBHOOK_SECRET is not set"),
        ("production", {"DJANGO_SECRET_KEY": "django-insecure-abc", "WEBHOOK_SECRET": "w"}, "not a real secret"),
        (
            "production",
            {"DJANGO_SECRET_KEY": STRONG_KEY, "WEBHOOK_SECRET": "w", "DATABASE_URL": "mysql://x/y"},
            "DATABASE_URL",
        ),
    ],
)
def test_django_refuses_to_start_misconfigured_with_one_line(settings: str, env: dict[str, str], expected: str) -> None:
    result = run(
        [sys.executable, "manage.py", "check"], DJANGO_SETTINGS_MODULE=f"noctis_pro.settings.{settings}", **env
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("manage.py: configuration error:")
    assert expected in lines[0]


def test_production_settings_start_with_real_secrets() -> None:
    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "CRITICAL"],
        DJANGO_SETTINGS_MODULE="noctis_pro.settings.production",
        DJANGO_SECRET_KEY=STRONG_KEY,
        WEBHOOK_SECRET="w",
    )
    assert result.returncode == 0, result.stderr


def test_fastapi_refuses_to_start_without_the_secret_key() -> None:
    result = run([sys.executable, "-c", "import fastapi_app.main"], DATABASE_URL="postgres://u@127.0.0.1:1/x")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
