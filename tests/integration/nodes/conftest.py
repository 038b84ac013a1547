"""Fixtures for nodes and transfers: a dcmtk storescp peer on a free loopback port, the archive helpers, and the
API fixtures (tests/integration/api/conftest.py)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.api.conftest import api, api_settings, auth_headers, database_url, radiologist, token
from tests.integration.django.receipts import archive, storage_root

__all__ = ["api", "api_settings", "archive", "auth_headers", "database_url", "radiologist", "storage_root", "token"]


@dataclass
class StoreScp:
    ae_title: str
    port: int
    folder: Path

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"storescp exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("storescp did not listen")


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[StoreScp]:
    """dcmtk storescp writing what it receives, bit-preserving (+B), into its own folder."""
    folder = tmp_path / "storescp"
    folder.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "--aetitle", "STORESCP", "--bit-preserving", "--output-directory", str(folder), str(port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, proc)
        yield StoreScp(ae_title="STORESCP", port=port, folder=folder)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def dataset_bytes(file: Path | bytes) -> bytes:
    """A Part-10 file's data set as encoded, after its file meta group (which each writer makes its own)."""
    data = file.read_bytes() if isinstance(file, Path) else file
    assert data[128:132] == b"DICM", "not a Part-10 file"
    # (0002,0000) UL group length, explicit VR little endian: tag 4 + VR 2 + length 2 + value 4 bytes.
    assert data[132:136] == b"\x02\x00\x00\x00", "no file meta group length"
    group_length = struct.unpack("<I", data[140:144])[0]
    return data[144 + group_length :]
