"""FastAPI's configuration, read from the environment and the repo-root .env (the names Django uses).

A missing or wrong value raises ConfigError with one line saying which; main.py turns it into an exit.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BASE_DIR = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A missing or wrong environment value; the service must not start."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8")

    database_url: str = "postgres://postgres@127.0.0.1:5432/noctis"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Only used to verify Django's signed sessions and session auth hashes; no default, like Django's.
    django_secret_key: SecretStr
    # Comma-separated, as Django's env.list reads it.
    cors_allowed_origins: Annotated[list[str], NoDecode] = []
    storage_root: Path = BASE_DIR / "var" / "storage"
    # Anonymised export ZIPs, written by the Celery worker (Django's EXPORT_ROOT, EXPORT_TTL_HOURS).
    export_root: Path = BASE_DIR / "var" / "exports"
    export_ttl_hours: int = 24
    # ONNX model configs the AI processors run (Django's AI_ONNX_MODELS, comma-separated): analyzers one may ask for.
    ai_onnx_models: Annotated[list[str], NoDecode] = []
    # Where FastAPI queues Celery tasks (exports, sends); Django's default: the Redis of REDIS_URL.
    celery_broker_url: str = ""
    session_cookie_name: str = "sessionid"
    db_pool_max_size: int = 10
    # The public origin (and path prefix) clients reach /api/v1 under, e.g. https://pacs.example.org, for the
    # absolute RetrieveURL and BulkDataURI values; empty: derived from each request (Host, X-Forwarded-Proto).
    noctis_public_base_url: str = ""
    # STOW-RS stores through the SCP over C-STORE: where it listens, its AE title, and the calling AE title used
    # (the SCP always admits that one, even with DICOM_ALLOWED_CALLING_AE_TITLES set).
    dicom_scp_host: str = "127.0.0.1"
    dicom_port: int = 11112
    dicom_ae_title: str = "NOCTIS"
    dicom_stow_ae_title: str = "NOCTIS_STOW"
    # Where STOW-RS parts wait (as files) until the SCP has stored them; empty: the system's temp folder.
    stow_temp_dir: Path | None = None

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"postgres", "postgresql"}:
            raise ValueError("must be a postgres:// or postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("django_secret_key")
    @classmethod
    def _secret_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("is empty: it has no default (see .env.example)")
        return value

    @field_validator("noctis_public_base_url")
    @classmethod
    def _public_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an http:// or https:// URL without query, e.g. https://pacs.example.org")
        return value

    @field_validator("dicom_ae_title", "dicom_stow_ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        value = value.strip()
        if not 1 <= len(value) <= 16 or not value.isascii() or "\\" in value or not value.isprintable():
            raise ValueError("must be 1 to 16 printable ASCII characters without a backslash")
        return value

    @field_validator("ai_onnx_models", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [path.strip() for path in value.split(",") if path.strip()]
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value


def env_file() -> Path:
    """The .env make run writes; NOCTIS_ENV_FILE names another (as in Django's settings). The real env wins."""
    return Path(os.environ.get("NOCTIS_ENV_FILE", str(BASE_DIR / ".env")))


def settings_load(**overrides: object) -> Settings:
    """Settings from the environment and .env; a bad value becomes one ConfigError line naming it."""
    try:
        return Settings(_env_file=env_file(), **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'} {_problem(err)}" for err in exc.errors()
        )
        raise ConfigError(f"fastapi_app configuration: {problems}") from None


def _problem(err: object) -> str:
    assert isinstance(err, dict)
    if err.get("type") == "missing":
        return "is not set: it has no default"
    return str(err.get("msg", "is invalid")).removeprefix("Value error, ")


@lru_cache
def get_settings() -> Settings:
    return settings_load()
