"""Test helpers shared by tests/integration/{django,webhook,tasks}: archive a dataset the way the SCP does.

The file goes to STORAGE_ROOT/<Study>/<Series>/<SOP>.dcm and a pacs_receipt row is inserted with the attributes
contracts.receipt.ATTR_KEYWORDS names (keyword -> string, multi-values joined with a backslash).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from django.db import connection
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from noctis_pro.contracts.receipt import ATTR_KEYWORDS, SOURCE_DIMSE
from noctis_pro.contracts.storage import instance_relpath
from noctis_pro.pacs.models import Receipt
from tests.conftest import make_dataset, write_dataset


def receipt_attrs(ds: Dataset) -> dict[str, str]:
    attrs = {}
    for keyword in ATTR_KEYWORDS:
        if keyword not in ds:
            continue
        value = ds[keyword].value
        if value is None:
            continue
        attrs[keyword] = "\\".join(str(v) for v in value) if isinstance(value, MultiValue | list) else str(value)
    return attrs


def receipt_insert(*, ds: Dataset, storage_root: Path, calling_ae: str = "MODALITY1") -> Receipt:
    """Write `ds` into the archive and insert its receipt with SQL, as dicom_scp_server/src/receipt.rs does."""
    relpath = instance_relpath(
        study_uid=ds.StudyInstanceUID, series_uid=ds.SeriesInstanceUID, sop_instance_uid=ds.SOPInstanceUID
    )
    path = write_dataset(ds, storage_root / relpath)
    data = path.read_bytes()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pacs_receipt (sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,"
            " transfer_syntax_uid, path, size_bytes, digest, calling_ae, called_ae, source, attrs)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
            [
                ds.SOPInstanceUID, ds.SOPClassUID, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                ds.file_meta.TransferSyntaxUID, relpath, len(data), "blake3:" + blake3(data).hexdigest(),
                calling_ae, "NOCTIS", SOURCE_DIMSE, json.dumps(receipt_attrs(ds)),
            ],
        )  # fmt: skip
        receipt_id = cursor.fetchone()[0]
    return Receipt.objects.get(pk=receipt_id)


@pytest.fixture
def storage_root(tmp_path: Path, settings: Any) -> Path:
    """A private STORAGE_ROOT and MEDIA_ROOT for the test."""
    settings.STORAGE_ROOT = tmp_path / "storage"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGE_ROOT.mkdir()
    settings.MEDIA_ROOT.mkdir()
    return settings.STORAGE_ROOT


@pytest.fixture
def archive(storage_root: Path) -> Callable[..., Receipt]:
    """`archive(modality="MR", study_uid=...)`: a real Part-10 file under STORAGE_ROOT and its receipt row."""

    def factory(**kwargs: Any) -> Receipt:
        return receipt_insert(ds=make_dataset(**kwargs), storage_root=storage_root)

    return factory
