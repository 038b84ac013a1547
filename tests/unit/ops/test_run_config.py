"""How `make run` decides what to start and what it writes to .env."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from ops.envfile import envfile_read, envfile_write
from ops.run import ConfigError, config_resolve, ports_check
from ops.services import stack_plan


def resolve(tmp_path: Path, **given: str):
    environ = {"NOCTIS_ENV_FILE": str(tmp_path / ".env"), "NOCTIS_VAR_DIR": str(tmp_path / "var"), **given}
    return config_resolve(environ, root=tmp_path)


def test_config_without_urls_chooses_embedded_stores_and_generates_secrets(tmp_path: Path) -> None:
    cfg = resolve(tmp_path)
    assert cfg.embedded_postgres
    assert cfg.embedded_redis
    assert cfg.env["DATABASE_URL"].startswith("postgres://noctis:")
    assert f"127.0.0.1:{cfg.env['NOCTIS_PG_PORT']}/noctis" in cfg.env["DATABASE_URL"]
    assert len(cfg.env["DJANGO_SECRET_KEY"]) >= 50
    assert cfg.env["NOCTIS_ADMIN_PASSWORD"]
    assert cfg.env["WEBHOOK_SECRET"]


def test_config_second_run_reuses_what_the_first_chose(tmp_path: Path) -> None:
    first = resolve(tmp_path)
    envfile_write(first.envfile, first.env, header="test")
    second = resolve(tmp_path)
    for key in ("DJANGO_SECRET_KEY", "WEBHOOK_SECRET", "NOCTIS_ADMIN_PASSWORD", "DATABASE_URL", "REDIS_URL"):
        assert second.env[key] == first.env[key], key
    assert second.embedded_postgres


def test_envfile_is_private_to_its_owner(tmp_path: Path) -> None:
    envfile_write(tmp_path / ".env", {"A": "1"}, header="h")
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert envfile_read(tmp_path / ".env") == {"A": "1"}


def test_config_given_urls_are_used_not_embedded(tmp_path: Path) -> None:
    cfg = resolve(tmp_path, DATABASE_URL="postgres://u:p@db.example:5432/x", REDIS_URL="redis://r:6379/1")
    assert not cfg.embedded_postgres
    assert not cfg.embedded_redis
    assert cfg.env["DATABASE_URL"] == "postgres://u:p@db.example:5432/x"


def test_config_environment_wins_over_admin_password_in_envfile(tmp_path: Path) -> None:
    envfile_write(tmp_path / ".env", {"NOCTIS_ADMIN_PASSWORD": "from-file"}, header="h")
    assert resolve(tmp_path, NOCTIS_ADMIN_PASSWORD="from-env").env["NOCTIS_ADMIN_PASSWORD"] == "from-env"


@pytest.mark.parametrize(("key", "value"), [("DICOM_PORT", "abc"), ("NOCTIS_HTTP_PORT", "70000")])
def test_config_bad_port_names_the_variable(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        resolve(tmp_path, **{key: value})


def test_config_bad_database_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        resolve(tmp_path, DATABASE_URL="mysql://x")


def test_ports_check_names_the_service_whose_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cfg = resolve(tmp_path, FASTAPI_PORT=port)
        plan = stack_plan(root=tmp_path, var_dir=cfg.var_dir, env=cfg.env, embedded_postgres=False,
                          embedded_redis=False)  # fmt: skip
        with pytest.raises(ConfigError, match=f"fastapi port {port} is already in use \\(set FASTAPI_PORT"):
            ports_check(plan, cfg.env)
