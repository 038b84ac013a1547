"""Fixtures for the DICOMweb tests: a real uvicorn serving the app over a private STORAGE_ROOT, an archive
filled through the real indexing path (file + receipt + receipts_index), and dicomweb-client pointed at it.

The tests are synchronous: rows are committed by the ORM in the test's thread (`transactional_db`) and the
app runs in uvicorn's thread with its own event loop, so dicomweb-client (requests) can block freely.
"""

from __future__ import annotations

import os
import subprocess
import time
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
from tests.conftest import free_port, make_dataset

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


# --- STOW-RS: the real SCP binary, storing into the test's STORAGE_ROOT and database ------------------------------

SCP_BINARY = Path(__file__).resolve().parents[3] / "dicom_scp_server" / "target" / "release" / "dicom_scp_server"
SCP_AE_TITLE = "NOCTIS"
MODALITY_AE_TITLE = "MODALITY1"


@dataclass(frozen=True)
class Scp:
    port: int
    ae_title: str


@pytest.fixture
def scp(storage_root: Path, database_url: str) -> Iterator[Scp]:  # noqa: F811
    """dicom_scp_server (release build) on a free port, with an allow-list that names only MODALITY1: STOW-RS
    must still get in. Its webhook goes nowhere; tests index the receipts with receipts_index, as Django would."""
    if not SCP_BINARY.is_file():
        pytest.fail(f"{SCP_BINARY} is missing: cd dicom_scp_server && cargo build --release --locked")
    port, http_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "WEBHOOK_SECRET": "stow-tests",
        "DJANGO_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/api/dicom/received/",
        "STORAGE_ROOT": str(storage_root),
        "DICOM_AE_TITLE": SCP_AE_TITLE,
        "DICOM_PORT": str(port),
        "DICOM_BIND_ADDRESS": "127.0.0.1",
        "SCP_HTTP_PORT": str(http_port),
        "DICOM_ALLOWED_CALLING_AE_TITLES": MODALITY_AE_TITLE,
        "RUST_LOG": "warn",
    }
    proc = subprocess.Popen([str(SCP_BINARY)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the SCP did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            time.sleep(0.1)
        yield Scp(port=port, ae_title=SCP_AE_TITLE)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def technologist_token(transactional_db: None) -> str:
    """A technologist may store (STOW-RS); a radiologist reads."""
    from django.contrib.auth.models import Group, User

    from noctis_pro.accounts.services import api_token_create

    user = User.objects.create_user(username="tech.smith", password="another correct horse 42")
    user.groups.add(Group.objects.get_or_create(name="technologist")[0])
    return api_token_create(user=user, name="stow tests")


@pytest.fixture
def stow_temp_dir(tmp_path: Path) -> Path:
    path = tmp_path / "stow-parts"
    path.mkdir()
    return path


@pytest.fixture
def stow_server(dicomweb_settings: Settings, scp: Scp, stow_temp_dir: Path) -> Iterator[str]:
    """The app, storing through `scp`, its parts waiting in `stow_temp_dir`."""
    update = {"dicom_port": scp.port, "dicom_ae_title": scp.ae_title, "stow_temp_dir": stow_temp_dir}
    settings = dicomweb_settings.model_copy(update=update)
    with serving(settings) as address:
        yield f"http://{address}"


@pytest.fixture
def stow_client(stow_server: str, technologist_token: str) -> DICOMwebClient:
    return DICOMwebClient(url=stow_server + DICOMWEB, headers={"Authorization": f"Bearer {technologist_token}"})


@pytest.fixture
def stow_http(stow_server: str, technologist_token: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {technologist_token}"}
    with httpx.Client(base_url=stow_server + DICOMWEB, headers=headers, timeout=60) as c:
        yield c


def receipts_index_pending() -> list[str]:
    """Index every unindexed receipt, as the webhook would; returns their SOP Instance UIDs."""
    from noctis_pro.pacs.models import Receipt

    pending = list(Receipt.objects.filter(indexed_at=None).values_list("pk", "sop_instance_uid"))
    result = receipts_index(receipt_ids=[pk for pk, _ in pending])
    assert not result.failed, result.failed
    return [sop for _, sop in pending]
