"""Shared fixtures: a pydicom factory that writes realistic Part-10 files, and free loopback ports.

Area-specific fixtures live in tests/<level>/<area>/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ops.launch import free_port

# The real stack (`stack`, `api_token`): one per session, shared by tests/e2e and tests/browser.
pytest_plugins = ["tests.stack"]

__all__ = ["free_port", "make_dataset", "test_database_url", "write_dataset"]

IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1001.1"  # tests only

SOP_CLASS_FOR_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}


def make_dataset(
    *,
    modality: str = "CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_name: str = "Doe^Jane",
    patient_id: str = "PID-0001",
    instance_number: int = 1,
    rows: int = 64,
    columns: int = 64,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **attrs: Any,
) -> Dataset:
    """A small but complete image dataset (16-bit signed CT-like pixels with a gradient and a disc)."""
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASS_FOR_MODALITY.get(modality, CTImageStorage)
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20260115"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC0001"
    ds.StudyDescription = "Chest"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.StudyID = "1"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"{modality} series"
    ds.BodyPartExamined = "CHEST"
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [0, 0, float(instance_number)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.0
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    yy, xx = np.mgrid[0:rows, 0:columns]
    disc = ((yy - rows / 2) ** 2 + (xx - columns / 2) ** 2) < (min(rows, columns) / 3) ** 2
    pixels = (xx * 4 + disc * 1000 + instance_number).astype(np.int16)
    ds.PixelData = pixels.tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    return ds


def write_dataset(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def dicom_file(tmp_path: Path) -> Callable[..., Path]:
    """`dicom_file(modality="MR", ...)` writes a Part-10 file under tmp_path and returns its path."""
    counter = iter(range(1, 1_000_000))

    def factory(**kwargs: Any) -> Path:
        ds = make_dataset(**kwargs)
        return write_dataset(ds, tmp_path / "dicom" / f"{next(counter):05d}.dcm")

    return factory


def read_dataset(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def test_database_url() -> str:
    """DATABASE_URL of the test database pytest-django made, for processes the tests start (with its password)."""
    from urllib.parse import quote

    from django.db import connection

    s = connection.settings_dict
    credentials = quote(s["USER"], safe="") + (f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else "")
    return f"postgres://{credentials}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


test_database_url.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
