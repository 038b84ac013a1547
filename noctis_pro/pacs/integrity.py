"""Whether the archive's files are still what was received: each instance's file against the size and digest
recorded when it was stored (contracts.receipt: "blake3:<hex>", or "sha256:<hex>" for older rows)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from blake3 import blake3

from noctis_pro.contracts.receipt import DIGEST_ALGORITHMS

CHUNK = 1024 * 1024


class StoredFile(Protocol):
    sop_instance_uid: str
    path: str  # relative to STORAGE_ROOT
    size_bytes: int
    digest: str


@dataclass(frozen=True)
class Problem:
    sop_instance_uid: str
    path: str
    reason: str


def file_digest(path: Path, algorithm: str) -> str:
    """`algorithm:hex` of the file, read in chunks (large multi-frame files never sit in memory whole)."""
    hasher = blake3() if algorithm == "blake3" else hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return f"{algorithm}:{hasher.hexdigest()}"


def file_problem(root: Path, stored: StoredFile) -> str | None:
    """Why this instance's file is not what was stored, or None when it is."""
    path = root / stored.path
    algorithm, _, _ = stored.digest.partition(":")
    if algorithm not in DIGEST_ALGORITHMS:
        return f"digest {stored.digest[:16]!r} names no known algorithm"
    try:
        size = path.stat().st_size
        if size != stored.size_bytes:
            return f"size {size} bytes, stored {stored.size_bytes}"
        if file_digest(path, algorithm) != stored.digest:
            return "content differs from what was stored (digest mismatch)"
    except FileNotFoundError:
        return "file missing"
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    return None


def files_verify(root: Path, stored: Iterable[StoredFile]) -> Iterator[Problem | None]:
    """One item per instance checked: its Problem, or None when the file is intact."""
    for s in stored:
        reason = file_problem(root, s)
        yield Problem(s.sop_instance_uid, s.path, reason) if reason else None
