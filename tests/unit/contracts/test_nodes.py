"""contracts.nodes (node validation, retry back-off) and the pure half of contracts.scu (C-FIND identifiers)."""

from __future__ import annotations

import pytest

from noctis_pro.contracts import nodes, scu


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("ORTHANC", None),
        ("MY AE 1", None),
        ("A" * 16, None),
        ("", "is required"),
        ("   ", "is required"),
        ("A" * 17, "is longer than 16 characters"),
        ("A\\B", "may hold only printable ASCII characters other than backslash"),
        ("AÉ", "may hold only printable ASCII characters other than backslash"),
        ("A\nB", "may hold only printable ASCII characters other than backslash"),
    ],
)
def test_ae_title_problem(value: str, problem: str | None) -> None:
    assert nodes.ae_title_problem(value) == problem


@pytest.mark.parametrize(
    ("value", "ok"),
    [("127.0.0.1", True), ("::1", True), ("pacs-2.example.org", True), ("PACS2", True), ("pacs.", True),
     ("bad host", False), ("-pacs", False), ("a..b", False), ("", False), ("x" * 256, False)],
)  # fmt: skip
def test_host_problem(value: str, ok: bool) -> None:
    assert (nodes.host_problem(value) is None) is ok


def test_node_problems_names_each_bad_field() -> None:
    assert nodes.node_problems(name="n", ae_title="AE", host="127.0.0.1", port=104) == {}
    assert nodes.node_problems(name="", ae_title="A\\B", host="no host", port=0) == {
        "name": "is required",
        "ae_title": "may hold only printable ASCII characters other than backslash",
        "host": "is not an IP address or host name",
        "port": "must be between 1 and 65535",
    }
    assert nodes.port_problem(True) == "must be a whole number"


def test_study_identifier_asks_every_return_key_and_matches_the_given_ones() -> None:
    ds = scu.find_identifier(level="STUDY", filters={"PatientName": "DOE*", "StudyDate": "20260101-20260131"})
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "DOE*"
    assert ds.StudyDate == "20260101-20260131"
    assert all(keyword in ds for keyword in scu.STUDY_RETURN_KEYS)
    assert ds.NumberOfStudyRelatedInstances == ""


@pytest.mark.parametrize(
    ("level", "filters", "message"),
    [
        ("IMAGE", {}, "level must be one of STUDY, SERIES"),
        ("STUDY", {"PatientAge": "40"}, "PatientAge cannot be matched at STUDY level"),
        ("STUDY", {"StudyDate": "2026-01-01"}, "StudyDate must be YYYYMMDD or a range"),
        ("STUDY", {"StudyInstanceUID": "1.2\\x.3"}, "StudyInstanceUID is not a UID (not digits and dots)"),
        ("STUDY", {"PatientName": "A\x00"}, "PatientName contains control characters"),
        ("SERIES", {"Modality": "CT"}, "StudyInstanceUID is required at SERIES level"),
    ],
)
def test_bad_queries_are_refused_with_the_key_named(level: str, filters: dict[str, str], message: str) -> None:
    with pytest.raises(scu.QueryInvalidError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scu.find_identifier(level=level, filters=filters)


def test_uid_lists_and_open_date_ranges_are_accepted() -> None:
    ds = scu.find_identifier(level="SERIES", filters={"StudyInstanceUID": "1.2.3\\1.2.4", "SeriesNumber": "2"})
    assert list(ds.StudyInstanceUID) == ["1.2.3", "1.2.4"]
    assert scu.find_identifier(level="STUDY", filters={"StudyDate": "20260101-"}).StudyDate == "20260101-"
