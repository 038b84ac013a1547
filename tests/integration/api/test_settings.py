"""Configuration: the shared env names, .env, and one clear line (not a traceback) when a value is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastapi_app.settings import BASE_DIR, ConfigError, settings_load


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    names = ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "CORS_ALLOWED_ORIGINS", "STORAGE_ROOT", "AI_ONNX_MODELS")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    monkeypatch.setenv("NOCTIS_ENV_FILE", str(env_file))
    return env_file


def test_settings_read_env_file_and_split_origins(clean_env: Path) -> None:
    clean_env.write_text(
        "DJANGO_SECRET_KEY=from-the-env-file-0123456789\n"
        "DATABASE_URL=postgresql://noctis@db:5432/noctis\n"
        "CORS_ALLOWED_ORIGINS=https://a.example, https://b.example/\n"
        "STORAGE_ROOT=/srv/dicom\n"
        "AI_ONNX_MODELS=/srv/models/a.json, /srv/models/b.json\n"
    )
    settings = settings_load()
    assert settings.ai_onnx_models == ["/srv/models/a.json", "/srv/models/b.json"]  # as Django's env.list reads it
    assert settings.django_secret_key.get_secret_value() == "from-the-env-file-0123456789"
    assert settings.database_url == "postgresql://noctis@db:5432/noctis"
    assert settings.cors_allowed_origins == ["https://a.example", "https://b.example"]
    assert str(settings.storage_root) == "/srv/dicom"


def test_real_environment_wins_over_env_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env.write_text("DJANGO_SECRET_KEY=file\n")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "environment")
    assert settings_load().django_secret_key.get_secret_value() == "environment"


def test_missing_secret_is_one_line_naming_it(clean_env: Path) -> None:
    with pytest.raises(ConfigError) as problem:
        settings_load()
    assert "DJANGO_SECRET_KEY is not set" in str(problem.value)
    assert "\n" not in str(problem.value)


def test_wrong_urls_are_named(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SECRET_KEY", "x" * 50)
    monkeypatch.setenv("DATABASE_URL", "mysql://db/noctis")
    monkeypatch.setenv("REDIS_URL", "http://redis")
    with pytest.raises(ConfigError) as problem:
        settings_load()
    message = str(problem.value)
    assert "DATABASE_URL must be a postgres://" in message
    assert "REDIS_URL must be a redis://" in message
    assert "\n" not in message


def test_uvicorn_import_exits_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    env["NOCTIS_ENV_FILE"] = str(tmp_path / "absent.env")
    result = subprocess.run(
        [sys.executable, "-c", "import fastapi_app.main"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "fastapi_app configuration: DJANGO_SECRET_KEY is not set: it has no default"
    ]
