"""Fixtures for the DICOMweb tests: a real uvicorn serving the app over a private STORAGE_ROOT, an archive
filled through the real indexing path (file + receipt + receipts_index), and dicomweb-client pointed at it.

The tests are synchronous: rows are committed by the ORM in the test's thread (`transactional_db`) and the
app runs in uvicorn's thread with its own event loop, so dicomweb-client (requests) can block freely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from django.conf import settings as django_settings
from pydicom.dataset import Dataset

from fastapi_app.settings import Settings
from noctis_pro.pacs.indexing import receipts_index
from tests.conftest import make_dataset

# auth_headers, database_url, radiologist and token are the API tests' fixtures, reused as they are (pytest
# finds fixtures imported into a conftest).
from tests.integration.api.conftest import (  # noqa: F401
    REDIS_URL,
    auth_headers,
    database_url,
    radiologist,
    serving,
    token,
)
from tests.integration.django.receipts import receipt_insert

DICOMWEB = "/api/v1/dicomweb"


@pytest.fixture
def storage_root(tmp_path: Path, settings: Any) -> Path:
    """A private STORAGE_ROOT, the same for Django (indexing checks the file) and the app."""
    settings.STORAGE_ROOT = tmp_path / "storage"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGE_ROOT.mkdir()
    settings.MEDIA_ROOT.mkdir()
    return Path(settings.STORAGE_ROOT)


@pytest.fixture
def dicomweb_settings(database_url: str, storage_root: Path) -> Settings:  # noqa: F811 (the imported fixture)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        redis_url=REDIS_URL,
        django_secret_key=django_settings.SECRET_KEY,
        storage_root=storage_root,
    )


@pytest.fixture
def server(dicomweb_settings: Settings) -> Iterator[str]:
    """http://host:port of the app in a real uvicorn on a free loopback port."""
    with serving(dicomweb_settings) as address:
        yield f"http://{address}"


@pytest.fixture
def client(server: str, token: str) -> DICOMwebClient:  # noqa: F811
    """dicomweb-client, as an API client would configure it (a Bearer token)."""
    return DICOMwebClient(url=server + DICOMWEB, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def http(server: str, auth_headers: dict[str, str]) -> Iterator[httpx.Client]:  # noqa: F811
    """A plain httpx client on the DICOMweb root, authenticated."""
    with httpx.Client(base_url=server + DICOMWEB, headers=auth_headers, timeout=30) as c:
        yield c


@pytest.fixture
def anonymous(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server + DICOMWEB, timeout=30) as c:
        yield c


@dataclass(frozen=True)
class Stored:
    ds: Dataset
    path: Path

    @property
    def uids(self) -> tuple[str, str, str]:
        return (self.ds.StudyInstanceUID, self.ds.SeriesInstanceUID, self.ds.SOPInstanceUID)


@pytest.fixture
def store(storage_root: Path, transactional_db: None) -> Callable[..., Stored]:
    """`store(ds)` or `store(modality="MR", ...)`: the file under STORAGE_ROOT, its receipt, indexed and committed."""

    def factory(ds: Dataset | None = None, **kwargs: Any) -> Stored:
        ds = ds if ds is not None else make_dataset(**kwargs)
        receipt = receipt_insert(ds=ds, storage_root=storage_root)
        result = receipts_index(receipt_ids=[receipt.pk])
        assert result.indexed == [receipt.pk], result.failed
        return Stored(ds=ds, path=storage_root / receipt.path)

    return factory
