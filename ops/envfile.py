"""The project's .env: KEY=VALUE lines that `make run` writes and manage.py, the services and compose read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def envfile_read(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def envfile_write(path: Path, values: dict[str, str], *, header: str) -> None:
    """Write atomically with owner-only permissions: the file holds secrets."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{key}={value}" for key, value in values.items()]
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def secret_token(nbytes: int = 48) -> str:
    return secrets.token_urlsafe(nbytes)
