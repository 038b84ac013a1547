"""The built viewer bundle (viewer/ -> static/viewer/): its entry files, and a version for their URLs.

viewer.js and viewer.css keep fixed names so the template can name them; everything they load carries a content
hash. nginx lets browsers cache /static/ for an hour, so the two entry URLs get `?v=<hash of viewer.js>`: a new
build is fetched at once instead of mixing an old entry with a new page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage

ENTRY_JS = "viewer/viewer.js"
ENTRY_CSS = "viewer/viewer.css"


@dataclass(frozen=True)
class Bundle:
    built: bool
    version: str


def _entry_path() -> Path | None:
    """The collected file (STATIC_ROOT), else the one in the app's static folder (before collectstatic)."""
    if staticfiles_storage.exists(ENTRY_JS):
        return Path(staticfiles_storage.path(ENTRY_JS))
    found = finders.find(ENTRY_JS)
    return Path(found) if isinstance(found, str) else None


@lru_cache(maxsize=4)
def _version(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def bundle_current() -> Bundle:
    path = _entry_path()
    if path is None or not path.is_file():
        return Bundle(built=False, version="")
    stat = path.stat()
    return Bundle(built=True, version=_version(path, stat.st_mtime_ns, stat.st_size))
