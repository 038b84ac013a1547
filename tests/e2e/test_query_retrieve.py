"""Query/retrieve on port 11112 with real peers: dcmtk findscu at each level and matching kind, movescu to a
dcmtk storescp the test starts (registered with `manage.py dicom_node add`), getscu, and pynetdicom for statuses,
failed-instance lists and C-CANCEL. Every retrieved data set must be byte-identical to the stored one."""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from tests.conftest import free_port, make_dataset, write_dataset
from tests.e2e.test_ingest import dataset_part, jpeg_dataset, storescu, wait_for_instances
from tests.stack import Stack

pytestmark = pytest.mark.e2e
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


@dataclass
class Archive:
    """What the module stored: two patients with a unique name prefix, so other tests' data never matches."""

    prefix: str
    pid_a: str
    pid_b: str
    study_a: str
    study_b: str
    ct_series_a: str
    mr_series_a: str
    sops: dict[str, list[str]]  # series UID -> SOP Instance UIDs
    jpeg_sop: str


@pytest.fixture(scope="module")
def archive(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    token = "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))
    prefix = f"QR{token}"
    directory = tmp_path_factory.mktemp("qr-archive")
    pid_a, pid_b = f"{prefix}-A", f"{prefix}-B"
    study_a, study_b = generate_uid(), generate_uid()
    ct_a, mr_a, ct_b, sc_b = (generate_uid() for _ in range(4))
    files: list[Path] = []
    sops: dict[str, list[str]] = {}

    def add(ds: Dataset, series_number: int) -> None:
        ds.SeriesNumber = series_number
        sops.setdefault(ds.SeriesInstanceUID, []).append(ds.SOPInstanceUID)
        files.append(write_dataset(ds, directory / f"{len(files):03d}.dcm"))

    # Dates, times and accession numbers of their own: make_dataset's defaults are shared with other tests.
    common_a = {
        "study_uid": study_a, "patient_name": f"{prefix}^Jane", "patient_id": pid_a,
        "StudyDate": "20250310", "StudyTime": "081500", "AccessionNumber": f"{prefix}1",
    }  # fmt: skip
    for n in (1, 2):
        add(make_dataset(modality="CT", series_uid=ct_a, instance_number=n, **common_a), 1)
        add(make_dataset(modality="MR", series_uid=mr_a, instance_number=n, **common_a), 2)
    common_b = {
        "study_uid": study_b, "patient_name": f"{prefix}^Sean", "patient_id": pid_b,
        "StudyDate": "20250420", "StudyTime": "143000", "AccessionNumber": f"{prefix}2",
    }  # fmt: skip
    add(make_dataset(modality="CT", series_uid=ct_b, **common_b), 1)
    b_sc = jpeg_dataset(series_uid=sc_b, **common_b)
    add(b_sc, 2)
    result = storescu(stack, files)
    assert result.returncode == 0, result.stderr
    assert wait_for_instances(stack, study_a, 4) == 4
    assert wait_for_instances(stack, study_b, 2) == 2
    return Archive(prefix, pid_a, pid_b, study_a, study_b, ct_a, mr_a, sops, b_sc.SOPInstanceUID)


def findscu(stack: Stack, out: Path, *keys: str, model: str = "-S") -> list[Dataset]:
    """findscu with `-k` keys; the response identifiers it extracted, read back."""
    out.mkdir(parents=True, exist_ok=True)
    argv = ["findscu", model, "-X", "-od", str(out), "-aec", stack.ae_title, "127.0.0.1", str(stack.dicom_port)]
    for key in keys:
        argv += ["-k", key]
    result = subprocess.run(argv, capture_output=True, text=True, env=DCMTK_ENV, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    found = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    for p in out.glob("rsp*.dcm"):
        p.unlink()
    return found


def values(found: list[Dataset], keyword: str) -> set[str]:
    return {str(ds.get(keyword, "")) for ds in found}


def test_find_study_level_matching_kinds(stack: Stack, archive: Archive, tmp_path: Path) -> None:
    a, b = archive.study_a, archive.study_b
    name = f"PatientName={archive.prefix}*"
    cases: list[tuple[list[str], set[str]]] = [
        ([f"PatientID={archive.pid_a}"], {a}),  # single value
        ([name], {a, b}),  # wildcard *
        ([f"PatientName={archive.prefix.lower()}^J?NE"], {a}),  # ? and case-insensitive names
        ([f"AccessionNumber={archive.prefix}?"], {a, b}),  # text wildcard, case-sensitive
        ([f"AccessionNumber={archive.prefix.lower()}1"], set()),
        ([name, "StudyDate=20250301-20250331"], {a}),  # date range
        ([name, "StudyDate=20250401-"], {b}),  # open date range
        ([name, "StudyTime=0800-0900"], {a}),  # time range (a partial time covers its minute)
        ([f"StudyInstanceUID={a}\\{b}"], {a, b}),  # UID list
        ([name, "ModalitiesInStudy=MR"], {a}),  # any modality of the study
        ([name, "ModalitiesInStudy=OT\\MR"], {a, b}),
    ]
    for keys, expected in cases:
        found = findscu(stack, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", *keys)
        assert values(found, "StudyInstanceUID") == expected, keys
    # Universal matching returns the values; the required keys come back on their own.
    found = findscu(
        stack, tmp_path, "QueryRetrieveLevel=STUDY", f"PatientID={archive.pid_a}", "PatientName", "StudyDescription",
        "StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "OperatorsName",
    )  # fmt: skip
    (ds,) = found
    assert ds.StudyInstanceUID == a
    assert ds.QueryRetrieveLevel == "STUDY"
    assert str(ds.PatientName) == f"{archive.prefix}^Jane"
    assert (ds.StudyDescription, ds.StudyDate, ds.NumberOfStudyRelatedInstances) == ("Chest", "20250310", 4)
    assert set(ds.ModalitiesInStudy) == {"CT", "MR"}
    assert ds.OperatorsName == ""  # not kept by the index: returned empty


def test_find_series_image_and_patient_levels(stack: Stack, archive: Archive, tmp_path: Path) -> None:
    found = findscu(
        stack, tmp_path, "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={archive.study_a}", "Modality=CT",
        "SeriesNumber", "NumberOfSeriesRelatedInstances",
    )  # fmt: skip
    assert values(found, "SeriesInstanceUID") == {archive.ct_series_a}
    assert (found[0].SeriesNumber, found[0].NumberOfSeriesRelatedInstances) == (1, 2)
    found = findscu(
        stack, tmp_path, "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={archive.study_a}",
        f"SeriesInstanceUID={archive.mr_series_a}", "SOPInstanceUID", "InstanceNumber=2", "Rows",
    )  # fmt: skip
    assert len(found) == 1
    assert found[0].InstanceNumber == 2
    assert found[0].Rows == 64
    assert found[0].SOPInstanceUID in archive.sops[archive.mr_series_a]
    found = findscu(
        stack, tmp_path, "QueryRetrieveLevel=IMAGE", f"SeriesInstanceUID={archive.ct_series_a}",
        f"SOPClassUID={CTImageStorage}", "SOPInstanceUID",
    )  # fmt: skip
    assert values(found, "SOPInstanceUID") == set(archive.sops[archive.ct_series_a])
    # Patient Root: the PATIENT level, and a study below a patient.
    found = findscu(
        stack, tmp_path, "QueryRetrieveLevel=PATIENT", f"PatientName={archive.prefix}*", "PatientID",
        "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedInstances", model="-P",
    )  # fmt: skip
    by_id = {ds.PatientID: ds for ds in found}
    assert set(by_id) == {archive.pid_a, archive.pid_b}
    assert (
        by_id[archive.pid_a].NumberOfPatientRelatedStudies,
        by_id[archive.pid_a].NumberOfPatientRelatedInstances,
    ) == (1, 4)
    found = findscu(
        stack, tmp_path, "QueryRetrieveLevel=STUDY", f"PatientID={archive.pid_b}", "StudyInstanceUID", model="-P"
    )
    assert values(found, "StudyInstanceUID") == {archive.study_b}


def association(stack: Stack, *contexts: str) -> AE:
    ae = AE(ae_title="QRTEST")
    for context in contexts:
        ae.add_requested_context(context)
    return ae


def find_statuses(stack: Stack, identifier: Dataset) -> list[Dataset]:
    ae = association(stack, StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert assoc.is_established
    try:
        return [status for status, _ in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)]
    finally:
        assoc.release()


def test_find_bad_identifiers_fail_with_a_comment(stack: Stack) -> None:
    no_level = Dataset()
    no_level.PatientName = "*"
    patient_level = Dataset()
    patient_level.QueryRetrieveLevel = "PATIENT"  # not in the Study Root model
    bad_date = Dataset()
    bad_date.QueryRetrieveLevel = "STUDY"
    bad_date.StudyDate = "2025"
    for identifier, status, words in (
        (no_level, 0xA900, "QueryRetrieveLevel missing"),
        (patient_level, 0xA900, "not in Study Root"),
        (bad_date, 0xC001, "StudyDate"),
    ):
        (final,) = find_statuses(stack, identifier)
        assert final.Status == status
        assert words in final.ErrorComment


@pytest.fixture(scope="module")
def destination(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A dcmtk storescp (uncompressed syntaxes only, its default), registered as a node that may receive."""
    out = tmp_path_factory.mktemp("storescp")
    port = free_port()
    ae_title = "QRDEST" + "".join(secrets.choice(string.ascii_uppercase) for _ in range(4))
    proc = subprocess.Popen(
        ["storescp", "-aet", ae_title, "-od", str(out), str(port)], env=DCMTK_ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    stack.manage("dicom_node", "add", ae_title.lower(), ae_title, "127.0.0.1", str(port))
    time.sleep(0.3)
    yield ae_title, out
    proc.terminate()
    proc.wait(timeout=10)


def stored_datasets(stack: Stack) -> dict[str, bytes]:
    """SOP Instance UID -> the data set bytes of every file the archive stored."""
    return {p.stem: dataset_part(p) for p in stack.storage_root.glob("*/*/*.dcm")}


def received(directory: Path) -> dict[str, bytes]:
    out = {}
    for path in directory.iterdir():
        if path.is_file():
            out[pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID] = dataset_part(path)
            path.unlink()
    return out


def test_movescu_to_storescp_delivers_byte_identical_data_sets(
    stack: Stack, archive: Archive, destination: tuple[str, Path]
) -> None:
    ae_title, out = destination
    result = subprocess.run(
        ["movescu", "-v", "-S", "-aec", stack.ae_title, "-aem", ae_title, "127.0.0.1", str(stack.dicom_port),
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={archive.study_a}"],
        capture_output=True, text=True, env=DCMTK_ENV, timeout=120, check=False,
    )  # fmt: skip
    assert "Received Final Move Response (Success)" in result.stdout + result.stderr, result.stderr
    got = received(out)
    expected = set(archive.sops[archive.ct_series_a]) | set(archive.sops[archive.mr_series_a])
    assert set(got) == expected
    stored = stored_datasets(stack)
    for sop, data in got.items():
        assert data == stored[sop], f"{sop} differs from the stored data set"


def move(stack: Stack, destination_ae: str, identifier: Dataset) -> list[tuple[Dataset, Dataset | None]]:
    ae = association(stack, StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert assoc.is_established
    try:
        return list(assoc.send_c_move(identifier, destination_ae, StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()


def study_identifier(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def test_move_reports_failed_sub_operations_and_unknown_destinations(
    stack: Stack, archive: Archive, destination: tuple[str, Path]
) -> None:
    ae_title, out = destination
    # storescp takes no JPEG: that sub-operation fails, the CT goes through, and the final status says so.
    responses = move(stack, ae_title, study_identifier(archive.study_b))
    final, identifier = responses[-1]
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 1)
    assert identifier is not None
    assert identifier.FailedSOPInstanceUIDList == archive.jpeg_sop  # one value: a str
    assert [r[0].Status for r in responses[:-1]] == [0xFF00, 0xFF00]
    assert len(received(out)) == 1
    # Unknown, and known but not allowed to receive.
    (final, _), *_ = move(stack, "NOSUCHAE", study_identifier(archive.study_a))
    assert final.Status == 0xA801
    assert "unknown" in final.ErrorComment
    stack.manage("dicom_node", "add", "qr-no-receive", "QRNORECV", "127.0.0.1", "9", "--no-receive")
    (final, _), *_ = move(stack, "QRNORECV", study_identifier(archive.study_a))
    assert final.Status == 0xA801
    assert "may not receive" in final.ErrorComment
    # A destination that cannot be reached: nothing could be performed.
    stack.manage("dicom_node", "add", "qr-down", "QRDOWN", "127.0.0.1", str(free_port()))
    final, identifier = move(stack, "QRDOWN", study_identifier(archive.study_a))[-1]
    assert final.Status == 0xA702
    assert final.NumberOfFailedSuboperations == 4
    assert len(identifier.FailedSOPInstanceUIDList) == 4


def test_nodes_whose_query_or_retrieve_switch_is_off_are_refused(stack: Stack, archive: Archive) -> None:
    stack.manage("dicom_node", "add", "qr-locked", "QRLOCKED", "127.0.0.1", "9", "--no-query", "--no-retrieve")
    ae = AE(ae_title="QRLOCKED")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert assoc.is_established
    try:
        identifier = study_identifier(archive.study_a)
        (final, _), *_ = assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
        assert final.Status == 0x0124
        assert "may_query" in final.ErrorComment
        (final, _), *_ = assoc.send_c_move(identifier, "QRLOCKED", StudyRootQueryRetrieveInformationModelMove)
        assert final.Status == 0x0124
        assert "may_retrieve" in final.ErrorComment
    finally:
        assoc.release()


def test_getscu_receives_byte_identical_data_sets(stack: Stack, archive: Archive, tmp_path: Path) -> None:
    result = subprocess.run(
        ["getscu", "-v", "-S", "-aec", stack.ae_title, "-od", str(tmp_path), "127.0.0.1", str(stack.dicom_port),
         "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={archive.study_a}",
         "-k", f"SeriesInstanceUID={archive.mr_series_a}"],
        capture_output=True, text=True, env=DCMTK_ENV, timeout=120, check=False,
    )  # fmt: skip
    assert "Received C-GET Response (Success)" in result.stdout + result.stderr, result.stderr
    got = received(tmp_path)
    assert set(got) == set(archive.sops[archive.mr_series_a])
    stored = stored_datasets(stack)
    assert all(data == stored[sop] for sop, data in got.items())


def test_c_cancel_stops_a_move_between_sub_operations(stack: Stack, archive: Archive) -> None:
    """The destination holds the second C-STORE until the test has sent C-CANCEL: the SCP finishes that
    sub-operation, starts no other, and answers 0xFE00 with the two left as remaining."""
    release = threading.Event()
    stores: list[str] = []

    def on_store(event: evt.Event) -> int:
        stores.append(event.request.AffectedSOPInstanceUID)
        if len(stores) == 2:
            release.wait(timeout=20)
        return 0x0000

    slow = AE(ae_title="QRSLOW")
    slow.supported_contexts = StoragePresentationContexts
    port = free_port()
    server = slow.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        stack.manage("dicom_node", "add", "qr-slow", "QRSLOW", "127.0.0.1", str(port))
        ae = association(stack, StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
        assert assoc.is_established
        (context,) = [
            c for c in assoc.accepted_contexts if c.abstract_syntax == StudyRootQueryRetrieveInformationModelMove
        ]
        statuses = []
        for status, _ in assoc.send_c_move(
            study_identifier(archive.study_a), "QRSLOW", StudyRootQueryRetrieveInformationModelMove, msg_id=7
        ):
            statuses.append(status)
            if len(statuses) == 1:
                assoc.send_c_cancel(7, context.context_id)
                time.sleep(0.3)
                release.set()
        assoc.release()
    finally:
        release.set()
        server.shutdown()
    final = statuses[-1]
    assert final.Status == 0xFE00
    assert (final.NumberOfCompletedSuboperations, final.NumberOfRemainingSuboperations) == (2, 2)
    assert len(stores) == 2


def test_c_cancel_stops_a_find(stack: Stack, archive: Archive) -> None:
    """pynetdicom sends the C-FIND-RQ when send_c_find is called: a C-CANCEL right behind it reaches the SCP
    while it queries, so it answers 0xFE00 before sending every match."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = archive.study_a
    identifier.SOPInstanceUID = ""
    ae = association(stack, StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert assoc.is_established
    (context,) = assoc.accepted_contexts
    responses = assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind, msg_id=11)
    assoc.send_c_cancel(11, context.context_id)
    statuses = [status.Status for status, _ in responses]
    assoc.release()
    assert statuses[-1] == 0xFE00
    assert len(statuses) - 1 < 4  # the study has 4 images


def test_implicit_only_destination_gets_a_re_encoded_data_set(stack: Stack, archive: Archive) -> None:
    """A destination that takes only Implicit VR Little Endian still gets the Explicit VR files, re-encoded."""
    got: dict[str, tuple[Dataset, str]] = {}

    def on_store(event: evt.Event) -> int:
        got[event.request.AffectedSOPInstanceUID] = (event.dataset, event.context.transfer_syntax)
        return 0x0000

    implicit = AE(ae_title="QRIMPL")
    implicit.add_supported_context(CTImageStorage, ["1.2.840.10008.1.2"])
    port = free_port()
    server = implicit.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        stack.manage("dicom_node", "add", "qr-implicit", "QRIMPL", "127.0.0.1", str(port))
        series = Dataset()
        series.QueryRetrieveLevel = "SERIES"
        series.StudyInstanceUID = archive.study_a
        series.SeriesInstanceUID = archive.ct_series_a
        final, _ = move(stack, "QRIMPL", series)[-1]
    finally:
        server.shutdown()
    assert final.Status == 0x0000
    assert set(got) == set(archive.sops[archive.ct_series_a])
    for sop, (ds, transfer_syntax) in got.items():
        stored = next(stack.storage_root.glob(f"*/*/{sop}.dcm"))
        assert pydicom.dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert transfer_syntax == "1.2.840.10008.1.2"
        assert ds.PatientName == f"{archive.prefix}^Jane"
        assert len(ds.PixelData) == 64 * 64 * 2
        assert ds.PixelData == pydicom.dcmread(stored).PixelData


def send_as(stack: Stack, calling_ae: str, path: Path) -> None:
    result = subprocess.run(
        ["storescu", "-aet", calling_ae, "-aec", stack.ae_title, "127.0.0.1", str(stack.dicom_port), str(path)],
        capture_output=True, text=True, env=DCMTK_ENV, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def findscu_as(stack: Stack, calling_ae: str, out: Path, model: str, *keys: str) -> list[Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    argv = ["findscu", model, "-X", "-od", str(out), "-aet", calling_ae, "-aec", stack.ae_title]
    argv += ["127.0.0.1", str(stack.dicom_port)]
    for key in keys:
        argv += ["-k", key]
    result = subprocess.run(argv, capture_output=True, text=True, env=DCMTK_ENV, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    found = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    for p in out.glob("rsp*.dcm"):
        p.unlink()
    return found


def test_a_calling_ae_finds_and_retrieves_only_its_facilitys_studies(
    stack: Stack, destination: tuple[str, Path], tmp_path: Path
) -> None:
    """The facility rule (noctis_pro/contracts/access.py) on Q/R: a calling AE mapped to facility A sees A's
    studies only; an unmapped one sees the unassigned ones only. The mappings are removed afterwards: the other
    tests expect every study unassigned."""
    token = "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))
    querier, sender_a, sender_x = f"QQ{token}", f"QA{token}", f"QX{token}"
    prefix = f"QF{token}"
    dest_ae, out = destination
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        facility = conn.execute(
            "INSERT INTO facilities_facility (name, created_at) VALUES (%s, now()) RETURNING id", (f"qr-{token}",)
        ).fetchone()[0]  # type: ignore[index]
        try:
            for ae in (querier, sender_a):
                conn.execute(
                    "INSERT INTO facilities_facilityae (ae_title, facility_id) VALUES (%s, %s)", (ae, facility)
                )
            study_a, study_x = generate_uid(), generate_uid()
            for study, sender in ((study_a, sender_a), (study_x, sender_x)):
                ds = make_dataset(study_uid=study, patient_name=f"{prefix}^{sender}", patient_id=f"{prefix}-{sender}")
                send_as(stack, sender, write_dataset(ds, tmp_path / f"{sender}.dcm"))
                assert wait_for_instances(stack, study, 1) == 1
            deadline = time.monotonic() + 30
            assigned = None
            while time.monotonic() < deadline and assigned != facility:
                row = conn.execute("SELECT facility_id FROM pacs_study WHERE study_instance_uid = %s", (study_a,))
                assigned = row.fetchone()[0]  # type: ignore[index]
                time.sleep(0.1)
            assert assigned == facility

            name = f"PatientName={prefix}*"
            found = findscu_as(stack, querier, tmp_path / "f", "-S", "QueryRetrieveLevel=STUDY", name)
            assert values(found, "StudyInstanceUID") == {study_a}
            found = findscu_as(stack, querier, tmp_path / "f", "-S", "QueryRetrieveLevel=SERIES", name)
            assert values(found, "StudyInstanceUID") == {study_a}
            found = findscu_as(
                stack, querier, tmp_path / "f", "-P", "QueryRetrieveLevel=PATIENT", f"PatientID={prefix}*",
                "NumberOfPatientRelatedStudies",
            )  # fmt: skip
            assert values(found, "PatientID") == {f"{prefix}-{sender_a}"}
            assert [ds.NumberOfPatientRelatedStudies for ds in found] == [1]
            # An AE no facility claims (every other test's) sees the unassigned study only.
            found = findscu_as(stack, "FINDSCU", tmp_path / "f", "-S", "QueryRetrieveLevel=STUDY", name)
            assert values(found, "StudyInstanceUID") == {study_x}

            ae = AE(ae_title=querier)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
            assert assoc.is_established
            try:
                model = StudyRootQueryRetrieveInformationModelMove
                # Another facility's study is simply not matched: success with no sub-operations.
                (final, _), *rest = assoc.send_c_move(study_identifier(study_x), dest_ae, model)
                assert not rest
                assert final.Status == 0x0000
                assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 0)
                final, _ = list(assoc.send_c_move(study_identifier(study_a), dest_ae, model))[-1]
                assert (final.Status, final.NumberOfCompletedSuboperations) == (0x0000, 1)
            finally:
                assoc.release()
            assert set(received(out)) == {pydicom.dcmread(tmp_path / f"{sender_a}.dcm").SOPInstanceUID}
        finally:
            conn.execute("DELETE FROM facilities_facilityae WHERE facility_id = %s", (facility,))
            conn.execute("UPDATE pacs_study SET facility_id = NULL WHERE facility_id = %s", (facility,))
            conn.execute("DELETE FROM facilities_facility WHERE id = %s", (facility,))


def test_a_node_whose_store_switch_is_off_is_refused_and_nothing_is_written(stack: Stack) -> None:
    token = "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))
    ae_title = f"QS{token}"
    stack.manage("dicom_node", "add", f"qr-nostore-{token.lower()}", ae_title, "127.0.0.1", "9", "--no-store")
    ds = make_dataset(patient_id=f"QS{token}")
    ae = AE(ae_title=ae_title)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", stack.dicom_port, ae_title=stack.ae_title)
    assert assoc.is_established
    try:
        for _ in range(2):  # the refusal holds for every C-STORE of the association
            status = assoc.send_c_store(ds)
            assert status.Status == 0x0124
            assert "may_store" in status.ErrorComment
    finally:
        assoc.release()
    assert not list(stack.storage_root.glob(f"*/*/{ds.SOPInstanceUID}.dcm"))
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pacs_receipt WHERE sop_instance_uid = %(uid)s)"
            " + (SELECT count(*) FROM pacs_instance WHERE sop_instance_uid = %(uid)s)",
            {"uid": ds.SOPInstanceUID},
        )
        assert row.fetchone()[0] == 0  # type: ignore[index]
