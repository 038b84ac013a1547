"""De-identification (PS3.15 Annex E basic profile) on datasets pydicom builds: what must go, what must stay."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, generate_uid

from noctis_pro.exports.deidentify import Deidentifier, burned_in_annotation
from tests.conftest import make_dataset

PHI = {
    "PatientName": "Secret^Patient",
    "PatientID": "MRN-778899",
    "OtherPatientIDs": "ALT-1",
    "InstitutionName": "St Elsewhere",
    "StationName": "CT-ROOM-3",
    "OperatorsName": "Tech^Tom",
    "PatientAddress": "1 Main Street",
}


def phi_dataset(**kwargs: object) -> Dataset:
    ds = make_dataset(**{**PHI, **kwargs})  # type: ignore[arg-type]
    ds.PatientAge = "054Y"
    ds.SeriesDate = "20260115"
    ds.AcquisitionDateTime = "20260115101700"
    ds.ContentTime = "101700"
    ds.add_new(0x00091001, "LO", "vendor private with a name")
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = generate_uid()
    ref.PersonName = "Nested^Name"
    ds.ReferencedImageSequence = Sequence([ref])
    return ds


def strings_of(ds: Dataset) -> str:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue().decode("latin-1")


def test_identifiers_dates_and_private_data_are_gone() -> None:
    original = phi_dataset()
    before = {k: str(original.get(k)) for k in ("StudyDate", "PatientBirthDate", "AccessionNumber")}
    ds = Deidentifier(salt="s").dataset(phi_dataset(**{"StudyInstanceUID": original.StudyInstanceUID}))
    raw = strings_of(ds)
    for value in [*PHI.values(), *before.values(), "054Y", "Nested^Name", "vendor private", "House^Gregory"]:
        assert value not in raw, value
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.StudyDate == ""
    assert ds.PatientBirthDate == ""
    assert ds.SeriesDate == ""
    assert "StudyDescription" not in ds
    assert "PatientAge" not in ds
    assert not any(elem.tag.is_private for elem in ds)


def test_uids_are_remapped_consistently_within_one_export_only() -> None:
    study_uid = generate_uid()
    first, second = phi_dataset(study_uid=study_uid), phi_dataset(study_uid=study_uid)
    ref_uid = first.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    deid = Deidentifier(salt="one")
    a, b = deid.dataset(first), deid.dataset(second)
    assert a.StudyInstanceUID == b.StudyInstanceUID != study_uid
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.ReferencedImageSequence[0].ReferencedSOPInstanceUID == deid.uid(ref_uid)
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.StudyInstanceUID.startswith("2.25.")
    assert len(a.StudyInstanceUID) <= 64
    other = Deidentifier(salt="two").dataset(phi_dataset(study_uid=study_uid))
    assert other.StudyInstanceUID != a.StudyInstanceUID  # exports cannot be linked to each other


def test_what_makes_the_image_usable_is_kept() -> None:
    ds = phi_dataset()
    pixels = ds.PixelData
    out = Deidentifier(salt="s").dataset(ds)
    assert out.SOPClassUID == CTImageStorage
    assert out.ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage
    assert out.PixelData == pixels
    assert [float(v) for v in out.PixelSpacing] == [0.7, 0.7]
    assert out.Modality == "CT"
    assert out.Rows == 64
    reread = pydicom.dcmread(io.BytesIO(strings_of(out).encode("latin-1")))
    assert reread.pixel_array.shape == (64, 64)


def test_patients_get_stable_pseudonyms_within_an_export() -> None:
    deid = Deidentifier(salt="s")
    a = deid.dataset(make_dataset(patient_id="P1"))
    b = deid.dataset(make_dataset(patient_id="P2"))
    c = deid.dataset(make_dataset(patient_id="P1"))
    assert a.PatientID == c.PatientID == str(a.PatientName) != b.PatientID


def test_burned_in_annotation_is_detected() -> None:
    assert burned_in_annotation(make_dataset(BurnedInAnnotation="YES"))
    assert not burned_in_annotation(make_dataset(BurnedInAnnotation="NO"))
    assert not burned_in_annotation(make_dataset())
