"""`make run`: resolve the configuration, write .env, start every service, print where to go, wait for Ctrl-C.

With no DATABASE_URL / REDIS_URL in the environment (or in .env from an earlier run that chose them), private
PostgreSQL and Redis are started under var/. Secrets are generated once and kept in .env (mode 0600).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ops import embedded
from ops.envfile import envfile_read, envfile_write, secret_token
from ops.services import Service, stack_plan
from ops.supervisor import StartError, Supervisor

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PORTS = {
    "NOCTIS_HTTP_PORT": "8080",
    "DJANGO_PORT": "8000",
    "FASTAPI_PORT": "8001",
    "DICOM_PORT": "11112",
    "SCP_HTTP_PORT": "11180",
    "NOCTIS_PG_PORT": "54329",
    "NOCTIS_REDIS_PORT": "63799",
}


class ConfigError(RuntimeError):
    pass


@dataclass
class StackConfig:
    env: dict[str, str]  # everything the services get (on top of os.environ)
    var_dir: Path
    envfile: Path
    embedded_postgres: bool
    embedded_redis: bool


def config_resolve(environ: dict[str, str], *, root: Path = ROOT) -> StackConfig:
    envfile = Path(environ.get("NOCTIS_ENV_FILE", str(root / ".env")))
    saved = envfile_read(envfile)

    def pick(key: str, default: str = "") -> str:
        return environ.get(key) or saved.get(key) or default

    var_dir = Path(pick("NOCTIS_VAR_DIR", str(root / "var"))).resolve()
    chosen: dict[str, str] = {"DJANGO_SETTINGS_MODULE": pick("DJANGO_SETTINGS_MODULE", "noctis_pro.settings.local")}
    for key, default in DEFAULT_PORTS.items():
        value = pick(key, default)
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise ConfigError(f"{key}={value!r} is not a port number (1-65535)")
        chosen[key] = value

    embedded_postgres = "DATABASE_URL" not in environ and (
        saved.get("NOCTIS_EMBEDDED_POSTGRES") == "1" or "DATABASE_URL" not in saved
    )
    if embedded_postgres:
        chosen["NOCTIS_EMBEDDED_POSTGRES"] = "1"
        chosen["NOCTIS_PG_PASSWORD"] = pick("NOCTIS_PG_PASSWORD") or secret_token(24)
        chosen["DATABASE_URL"] = embedded.postgres_url(
            password=chosen["NOCTIS_PG_PASSWORD"], port=int(chosen["NOCTIS_PG_PORT"]), dbname="noctis"
        )
    else:
        chosen["DATABASE_URL"] = pick("DATABASE_URL")
        if not chosen["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
            raise ConfigError("DATABASE_URL must be a postgres:// URL")

    embedded_redis = "REDIS_URL" not in environ and (
        saved.get("NOCTIS_EMBEDDED_REDIS") == "1" or "REDIS_URL" not in saved
    )
    if embedded_redis:
        chosen["NOCTIS_EMBEDDED_REDIS"] = "1"
        chosen["NOCTIS_REDIS_PASSWORD"] = pick("NOCTIS_REDIS_PASSWORD") or secret_token(24)
        chosen["REDIS_URL"] = embedded.redis_url(
            password=chosen["NOCTIS_REDIS_PASSWORD"], port=int(chosen["NOCTIS_REDIS_PORT"])
        )
    else:
        chosen["REDIS_URL"] = pick("REDIS_URL")
        if not chosen["REDIS_URL"].startswith(("redis://", "rediss://")):
            raise ConfigError("REDIS_URL must be a redis:// URL")

    http = chosen["NOCTIS_HTTP_PORT"]
    chosen.update(
        {
            "DJANGO_SECRET_KEY": pick("DJANGO_SECRET_KEY") or secret_token(48),
            "WEBHOOK_SECRET": pick("WEBHOOK_SECRET") or secret_token(32),
            "NOCTIS_ADMIN_USER": pick("NOCTIS_ADMIN_USER", "admin"),
            "NOCTIS_ADMIN_PASSWORD": pick("NOCTIS_ADMIN_PASSWORD") or secret_token(12),
            "DICOM_AE_TITLE": pick("DICOM_AE_TITLE", "NOCTIS"),
            "STORAGE_ROOT": pick("STORAGE_ROOT", str(var_dir / "storage")),
            "MEDIA_ROOT": pick("MEDIA_ROOT", str(var_dir / "media")),
            "EXPORT_ROOT": pick("EXPORT_ROOT", str(var_dir / "exports")),
            "STATIC_ROOT": pick("STATIC_ROOT", str(var_dir / "static")),
            "DJANGO_WEBHOOK_URL": pick(
                "DJANGO_WEBHOOK_URL", f"http://127.0.0.1:{chosen['DJANGO_PORT']}/api/dicom/received/"
            ),
            "ALLOWED_HOSTS": pick("ALLOWED_HOSTS", "127.0.0.1,localhost"),
            "CSRF_TRUSTED_ORIGINS": pick("CSRF_TRUSTED_ORIGINS", f"http://127.0.0.1:{http},http://localhost:{http}"),
            "NOCTIS_VAR_DIR": str(var_dir),
        }
    )
    return StackConfig(chosen, var_dir, envfile, embedded_postgres, embedded_redis)


def ports_check(plan: list, env: dict[str, str]) -> None:
    """Fail before starting anything when a port is taken, naming the service and the variable."""
    for item in plan:
        if not isinstance(item, Service) or item.port_env is None:
            continue
        port = int(env[item.port_env])
        extra = [("127.0.0.1", int(env["SCP_HTTP_PORT"]), "SCP_HTTP_PORT")] if item.name == "rust_scp" else []
        for host, p, var in [("0.0.0.0" if item.name == "rust_scp" else "127.0.0.1", port, item.port_env), *extra]:  # noqa: S104
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, p))
                except OSError:
                    raise ConfigError(f"{item.name} port {p} is already in use (set {var} to choose another)") from None


def nginx_render(cfg: StackConfig, *, root: Path = ROOT) -> None:
    nginx_dir = cfg.var_dir / "nginx"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx_dir / sub).mkdir(parents=True, exist_ok=True)
    text = (root / "nginx" / "local.conf.template").read_text()
    replacements = {
        "USER_DIRECTIVE": "user root;" if os.geteuid() == 0 else "",
        "VAR_DIR": str(cfg.var_dir),
        "MIME_TYPES": "/etc/nginx/mime.types",
        "DJANGO_PORT": cfg.env["DJANGO_PORT"],
        "FASTAPI_PORT": cfg.env["FASTAPI_PORT"],
        "HTTP_PORT": cfg.env["NOCTIS_HTTP_PORT"],
        "STATIC_ROOT": cfg.env["STATIC_ROOT"],
    }
    for key, value in replacements.items():
        text = text.replace(f"@@{key}@@", value)
    (nginx_dir / "nginx.conf").write_text(text)


def banner(cfg: StackConfig) -> str:
    e = cfg.env
    url = f"http://127.0.0.1:{e['NOCTIS_HTTP_PORT']}/"
    return "\n".join(
        [
            "",
            "NoctisPro is running",
            f"  Web       {url}",
            f"  Login     {e['NOCTIS_ADMIN_USER']} / {e['NOCTIS_ADMIN_PASSWORD']}",
            f"  DICOM     port {e['DICOM_PORT']}, AE title {e['DICOM_AE_TITLE']}",
            f"  API       {url}api/v1/docs",
            f"  Settings  {cfg.envfile} (python manage.py ... talks to this stack)",
            f"  Logs      {cfg.var_dir / 'log'}/<service>.log; Ctrl-C stops everything",
            "",
        ]
    )


def main() -> int:
    try:
        cfg = config_resolve(dict(os.environ))
        for sub in ("storage", "media", "static", "log"):
            (cfg.var_dir / sub).mkdir(parents=True, exist_ok=True)
        envfile_write(cfg.envfile, cfg.env, header="Written by `make run`: what it chose. Never commit this file.")
        plan = stack_plan(
            root=ROOT,
            var_dir=cfg.var_dir,
            env=cfg.env,
            embedded_postgres=cfg.embedded_postgres,
            embedded_redis=cfg.embedded_redis,
            reset_admin_password="NOCTIS_ADMIN_PASSWORD" in os.environ,
        )
        ports_check(plan, cfg.env)
        if cfg.embedded_postgres:
            embedded.postgres_init(embedded.postgres_data_dir(cfg.var_dir), password=cfg.env["NOCTIS_PG_PASSWORD"])
        nginx_render(cfg)
    except (ConfigError, embedded.EmbeddedError) as e:
        print(f"make run: {e}", file=sys.stderr)
        return 2

    supervisor = Supervisor(plan, env={**os.environ, **cfg.env}, cwd=ROOT, log_dir=cfg.var_dir / "log")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        supervisor.start()
    except StartError as e:
        print(f"make run: {e}", file=sys.stderr)
        return 1
    print(banner(cfg), flush=True)
    supervisor.wait()
    supervisor.stop()
    print("NoctisPro stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
