"""QIDO-RS through dicomweb-client against a real uvicorn: each level, each kind of matching, paging, errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.integration.dicomweb.conftest import Stored

StoreFn = Callable[..., Stored]
# dicomweb-client 0.61 sends `Host: <host>` without the port on its plain GETs, so the app (rightly, RFC 9110
# 7.2) builds its URLs with the default port: the client's answers are compared by path, httpx's in full.
DICOMWEB_PATH = "/api/v1/dicomweb"
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"


@dataclass(frozen=True)
class Three:
    """Three studies: A (Doe^Jane, CT, two instances), B (Doe^John, MR), C (Roe^Janet, CT + SR)."""

    a: list[Stored]
    b: list[Stored]
    c: list[Stored]

    @property
    def uids(self) -> dict[str, str]:
        return {name: getattr(self, name)[0].ds.StudyInstanceUID for name in "abc"}


@pytest.fixture
def three(store: StoreFn) -> Three:
    a_study, a_series = generate_uid(), generate_uid()
    a = [
        store(
            study_uid=a_study,
            series_uid=a_series,
            instance_number=n,
            patient_name="Doe^Jane",
            patient_id="PID-A",
            StudyDate="20260110",
            StudyTime="101500",
            AccessionNumber="ACC-A",
            StudyID="S-A",
            StudyDescription="Chest CT",
        )
        for n in (2, 1)
    ]
    b = [
        store(
            modality="MR",
            patient_name="Doe^John",
            patient_id="PID-B",
            StudyDate="20260120",
            StudyTime="143000",
            AccessionNumber="ACC-B",
            PatientSex="M",
            ReferringPhysicianName="Wilson^James",
        )
    ]
    c_study = generate_uid()
    c = [
        store(
            study_uid=c_study,
            patient_name="Roe^Janet",
            patient_id="PID-C",
            StudyDate="20260215",
            StudyTime="080000",
            AccessionNumber="XYZ-1",
            PatientBirthDate="19850301",
        ),
        store(study_uid=c_study, modality="SR", patient_name="Roe^Janet", patient_id="PID-C", SeriesNumber=2,
              StudyDate="20260215", StudyTime="080000", AccessionNumber="XYZ-1", PatientBirthDate="19850301"),
    ]  # fmt: skip
    return Three(a, b, c)


def _study_uids(results: list[dict[str, Any]]) -> list[str]:
    return [r[STUDY_UID]["Value"][0] for r in results]


def _found(client: DICOMwebClient, three: Three, **search: Any) -> set[str]:
    """The names (a, b, c) of the studies a study search finds."""
    by_uid = {uid: name for name, uid in three.uids.items()}
    return {by_uid[uid] for uid in _study_uids(client.search_for_studies(**search))}


def test_study_search_returns_the_required_attributes(client: DICOMwebClient, three: Three) -> None:
    results = client.search_for_studies(search_filters={"StudyInstanceUID": three.uids["a"]})
    assert len(results) == 1
    study = results[0]
    assert study == {
        "00080020": {"vr": "DA", "Value": ["20260110"]},
        "00080030": {"vr": "TM", "Value": ["101500"]},
        "00080050": {"vr": "SH", "Value": ["ACC-A"]},
        "00080061": {"vr": "CS", "Value": ["CT"]},
        "00080090": {"vr": "PN", "Value": [{"Alphabetic": "House^Gregory"}]},
        "00081190": {"vr": "UR", "Value": [f"http://127.0.0.1{DICOMWEB_PATH}/studies/{three.uids['a']}"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00100020": {"vr": "LO", "Value": ["PID-A"]},
        "00100030": {"vr": "DA", "Value": ["19700101"]},
        "00100040": {"vr": "CS", "Value": ["F"]},
        "0020000D": {"vr": "UI", "Value": [three.uids["a"]]},
        "00200010": {"vr": "SH", "Value": ["S-A"]},
        "00201206": {"vr": "IS", "Value": [1]},
        "00201208": {"vr": "IS", "Value": [2]},
    }
    c = client.search_for_studies(search_filters={"StudyInstanceUID": three.uids["c"]})[0]
    assert c["00080061"]["Value"] == ["CT", "SR"]
    assert (c["00201206"]["Value"], c["00201208"]["Value"]) == ([2], [2])


def test_single_value_matching(client: DICOMwebClient, three: Three) -> None:
    assert _found(client, three, search_filters={"PatientID": "PID-A"}) == {"a"}
    assert _found(client, three, search_filters={"AccessionNumber": "XYZ-1"}) == {"c"}
    assert _found(client, three, search_filters={"PatientSex": "M"}) == {"b"}
    assert _found(client, three, search_filters={"StudyID": "S-A"}) == {"a"}
    assert _found(client, three, search_filters={"PatientName": "doe^jane"}) == {"a"}  # names: case-insensitive
    assert _found(client, three, search_filters={"PatientName": "Doe"}) == set()  # the whole value, not a prefix
    assert _found(client, three, search_filters={"AccessionNumber": "acc-a"}) == set()  # other text: exact case
    assert _found(client, three, search_filters={"ModalitiesInStudy": "MR"}) == {"b"}
    assert _found(client, three, search_filters={"ModalitiesInStudy": "SR"}) == {"c"}
    assert _found(client, three, search_filters={"ModalitiesInStudy": "MR,SR"}) == {"b", "c"}
    assert _found(client, three, search_filters={"ReferringPhysicianName": "WILSON^JAMES"}) == {"b"}


def test_wildcard_matching(client: DICOMwebClient, three: Three) -> None:
    assert _found(client, three, search_filters={"PatientName": "doe*"}) == {"a", "b"}
    assert _found(client, three, search_filters={"PatientName": "*^JAN*"}) == {"a", "c"}
    assert _found(client, three, search_filters={"PatientName": "DOE^J?NE"}) == {"a"}
    assert _found(client, three, search_filters={"AccessionNumber": "ACC-*"}) == {"a", "b"}
    assert _found(client, three, search_filters={"PatientID": "PID-?"}) == {"a", "b", "c"}
    assert _found(client, three, search_filters={"StudyDescription": "*CT"}) == {"a"}
    assert _found(client, three, search_filters={"PatientID": "PID_A"}) == set()  # _ and % are not wildcards


def test_date_and_time_ranges(client: DICOMwebClient, three: Three) -> None:
    assert _found(client, three, search_filters={"StudyDate": "20260110"}) == {"a"}
    assert _found(client, three, search_filters={"StudyDate": "20260115-20260131"}) == {"b"}
    assert _found(client, three, search_filters={"StudyDate": "20260120-"}) == {"b", "c"}
    assert _found(client, three, search_filters={"StudyDate": "-20260120"}) == {"a", "b"}
    assert _found(client, three, search_filters={"StudyTime": "1000-1200"}) == {"a"}
    assert _found(client, three, search_filters={"StudyTime": "14"}) == {"b"}  # a partial time covers its hour
    assert _found(client, three, search_filters={"StudyTime": "-0800"}) == {"c"}
    assert _found(client, three, search_filters={"PatientBirthDate": "19800101-19891231"}) == {"c"}
    both = {"StudyDate": "20260101-20260131", "StudyTime": "1200-"}
    assert _found(client, three, search_filters=both) == {"b"}


def test_uid_lists(client: DICOMwebClient, three: Three) -> None:
    uids = three.uids
    assert _found(client, three, search_filters={"StudyInstanceUID": f"{uids['a']},{uids['c']}"}) == {"a", "c"}
    assert _found(client, three, search_filters={"StudyInstanceUID": f"{uids['b']}\\{uids['c']}"}) == {"b", "c"}
    assert _found(client, three, search_filters={"StudyInstanceUID": "1.2.3"}) == set()


def test_fuzzy_person_name_matching(client: DICOMwebClient, three: Three) -> None:
    assert _found(client, three, search_filters={"PatientName": "jan"}, fuzzymatching=True) == {"a", "c"}
    assert _found(client, three, search_filters={"PatientName": "jo do"}, fuzzymatching=True) == {"b"}
    assert _found(client, three, search_filters={"PatientName": "DO^JA"}, fuzzymatching=True) == {"a"}
    assert _found(client, three, search_filters={"PatientName": "oe"}, fuzzymatching=True) == set()  # word starts
    assert _found(client, three, search_filters={"PatientName": "jan"}, fuzzymatching=False) == set()
    assert _found(client, three, search_filters={"ReferringPhysicianName": "jam"}, fuzzymatching=True) == {"b"}


def test_keys_and_includefield_by_keyword_tag_or_all(client: DICOMwebClient, three: Three) -> None:
    assert _found(client, three, search_filters={"00100020": "PID-B"}) == {"b"}
    plain = client.search_for_studies(search_filters={"PatientID": "PID-A"})[0]
    assert "00081030" not in plain
    for fields in (["StudyDescription"], ["00081030"], ["all"]):
        study = client.search_for_studies(search_filters={"PatientID": "PID-A"}, fields=fields)[0]
        assert study["00081030"] == {"vr": "LO", "Value": ["Chest CT"]}, fields
    empty_key = client.search_for_studies(search_filters={"PatientID": "PID-A", "StudyDescription": ""})[0]
    assert empty_key["00081030"] == {"vr": "LO", "Value": ["Chest CT"]}  # an empty key asks for the attribute


def test_limit_offset_and_the_more_results_warning(client: DICOMwebClient, three: Three, http: httpx.Client) -> None:
    newest_first = [three.uids[n] for n in "cba"]
    assert _study_uids(client.search_for_studies()) == newest_first
    assert _study_uids(client.search_for_studies(limit=2)) == newest_first[:2]
    assert _study_uids(client.search_for_studies(limit=2, offset=2)) == newest_first[2:]
    assert _study_uids(client.search_for_studies(offset=5)) == []
    assert _study_uids(client.search_for_studies(get_remaining=True, limit=1)) == newest_first
    first = http.get("/studies", params={"limit": 2})
    assert first.headers["warning"].startswith("299 ")
    assert "warning" not in http.get("/studies", params={"limit": 2, "offset": 1}).headers


def test_retrieve_urls_are_absolute_for_the_host_the_client_used(http: httpx.Client, three: Three, server: str) -> None:
    a = three.a[0].ds
    study = http.get("/studies", params={"PatientID": "PID-A"}).json()[0]
    assert study["00081190"]["Value"] == [f"{server}{DICOMWEB_PATH}/studies/{a.StudyInstanceUID}"]
    behind_nginx = http.get("/studies", params={"PatientID": "PID-A"}, headers={"Host": "pacs.example.org"}).json()
    assert behind_nginx[0]["00081190"]["Value"] == [
        f"http://pacs.example.org{DICOMWEB_PATH}/studies/{a.StudyInstanceUID}"
    ]
    series = http.get(f"/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}/instances").json()
    assert {i["00081190"]["Value"][0] for i in series} == {
        f"{server}{DICOMWEB_PATH}/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}/instances/{s.ds.SOPInstanceUID}"
        for s in three.a
    }


def test_empty_result_is_200_with_an_empty_array(http: httpx.Client, three: Three) -> None:
    response = http.get("/studies", params={"PatientID": "nobody"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    assert response.json() == []


def test_series_search_in_a_study_and_across_studies(client: DICOMwebClient, three: Three) -> None:
    a = three.a[0].ds
    (series,) = client.search_for_series(a.StudyInstanceUID)
    assert series == {
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "0008103E": {"vr": "LO", "Value": ["CT series"]},
        "00081190": {
            "vr": "UR",
            "Value": [f"http://127.0.0.1{DICOMWEB_PATH}/studies/{a.StudyInstanceUID}/series/{a.SeriesInstanceUID}"],
        },
        "0020000E": {"vr": "UI", "Value": [a.SeriesInstanceUID]},
        "00200011": {"vr": "IS", "Value": [1]},
        "00201209": {"vr": "IS", "Value": [2]},
    }
    c_series = client.search_for_series(three.uids["c"])
    assert [s["00080060"]["Value"][0] for s in c_series] == ["CT", "SR"]
    assert client.search_for_series(three.uids["c"], search_filters={"Modality": "SR"})[0]["00200011"]["Value"] == [2]
    assert (
        client.search_for_series(three.uids["c"], search_filters={"SeriesNumber": "2"})[0][SERIES_UID]
        == c_series[1][SERIES_UID]
    )

    everywhere = client.search_for_series(search_filters={"Modality": "CT"})
    assert {s[STUDY_UID]["Value"][0] for s in everywhere} == {three.uids["a"], three.uids["c"]}
    assert all(s["00100010"]["vr"] == "PN" for s in everywhere)  # /series answers study attributes too
    by_patient = client.search_for_series(search_filters={"PatientName": "doe*", "Modality": "M?"})
    assert [s[SERIES_UID]["Value"][0] for s in by_patient] == [three.b[0].ds.SeriesInstanceUID]
    assert client.search_for_series(search_filters={"SeriesDescription": "*series", "StudyDate": "20260215"}) != []


def test_instance_search_at_each_scope(client: DICOMwebClient, three: Three) -> None:
    a1 = next(s for s in three.a if s.ds.InstanceNumber == 1).ds
    a2 = next(s for s in three.a if s.ds.InstanceNumber == 2).ds
    found = client.search_for_instances(a1.StudyInstanceUID, a1.SeriesInstanceUID)
    assert [i[SOP_UID]["Value"][0] for i in found] == [a1.SOPInstanceUID, a2.SOPInstanceUID]  # by InstanceNumber
    assert found[0] == {
        "00080016": {"vr": "UI", "Value": [a1.SOPClassUID]},
        "00080018": {"vr": "UI", "Value": [a1.SOPInstanceUID]},
        "00081190": {
            "vr": "UR",
            "Value": [
                f"http://127.0.0.1{DICOMWEB_PATH}/studies/{a1.StudyInstanceUID}/series/{a1.SeriesInstanceUID}"
                f"/instances/{a1.SOPInstanceUID}"
            ],
        },
        "00200013": {"vr": "IS", "Value": [1]},
        "00280008": {"vr": "IS"},  # single-frame: NumberOfFrames is absent from the file, so empty
        "00280010": {"vr": "US", "Value": [64]},
        "00280011": {"vr": "US", "Value": [64]},
    }
    in_study = client.search_for_instances(three.uids["c"])
    assert len(in_study) == 2
    assert all("00080060" in i for i in in_study)  # with their series' attributes
    assert len(client.search_for_instances(search_filters={"PatientID": "PID-A"})) == 2
    by_sop = client.search_for_instances(search_filters={"SOPInstanceUID": a2.SOPInstanceUID})
    assert [i["00200013"]["Value"] for i in by_sop] == [[2]]
    by_number = client.search_for_instances(a1.StudyInstanceUID, a1.SeriesInstanceUID, search_filters={"00200013": 2})
    assert [i[SOP_UID]["Value"][0] for i in by_number] == [a2.SOPInstanceUID]
    with_extra = client.search_for_instances(
        a1.StudyInstanceUID, a1.SeriesInstanceUID, fields=["SliceThickness", "00200032"], limit=1
    )[0]
    assert with_extra["00180050"] == {"vr": "DS", "Value": [1.0]}
    assert with_extra["00200032"] == {"vr": "DS", "Value": [0.0, 0.0, 1.0]}


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/studies", {"Foo": "1"}, "Foo"),
        ("/studies", {"99990010": "1"}, "99990010"),
        ("/studies", {"StudyDate": "2026-01-01"}, "StudyDate"),
        ("/studies", {"StudyDate": "20260201-20260101"}, "StudyDate"),
        ("/studies", {"StudyTime": "2561"}, "StudyTime"),
        ("/studies", {"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID"),
        ("/studies", {"Modality": "CT"}, "Modality"),  # a series key in a study search
        ("/studies", {"NumberOfStudyRelatedSeries": "2"}, "NumberOfStudyRelatedSeries"),
        ("/studies", {"ModalitiesInStudy": "C%"}, "ModalitiesInStudy"),
        ("/studies", {"includefield": "NotAKeyword"}, "NotAKeyword"),
        ("/studies", {"limit": "many"}, "limit"),
        ("/studies", {"limit": "0"}, "limit"),
        ("/studies", {"offset": "-1"}, "offset"),
        ("/studies", {"fuzzymatching": "yes"}, "fuzzymatching"),
        ("/series", {"SeriesNumber": "two"}, "SeriesNumber"),
        ("/instances", {"InstanceNumber": "1.5"}, "InstanceNumber"),
        ("/studies/1.2.3/series", {"PatientID": "x"}, "PatientID"),
        ("/studies/not-a-uid/series", {}, "StudyInstanceUID"),
    ],
)
def test_bad_keys_and_values_are_400_naming_them(
    http: httpx.Client, path: str, params: dict[str, str], needle: str
) -> None:
    response = http.get(path, params=params)
    assert response.status_code == 400, response.text
    assert needle in response.json()["detail"]


def test_a_key_given_twice_is_400(http: httpx.Client) -> None:
    response = http.get("/studies?PatientID=a&00100020=b")
    assert response.status_code == 400
    assert "PatientID" in response.json()["detail"]


def test_search_answers_only_json(http: httpx.Client, three: Three) -> None:
    assert http.get("/studies", headers={"Accept": "application/dicom+xml"}).status_code == 406
    assert http.get("/studies", headers={"Accept": "application/json"}).status_code == 200
    assert http.get("/studies", headers={"Accept": "text/html, */*;q=0.1"}).status_code == 200


def test_openapi_documents_the_dicomweb_routes(server: str) -> None:
    paths = set(httpx.get(f"{server}/api/v1/openapi.json").json()["paths"])
    instance = "/api/v1/dicomweb/studies/{study}/series/{series}/instances/{instance}"
    assert {
        "/api/v1/dicomweb/studies",
        "/api/v1/dicomweb/series",
        "/api/v1/dicomweb/instances",
        "/api/v1/dicomweb/studies/{study}/series",
        "/api/v1/dicomweb/studies/{study}/instances",
        "/api/v1/dicomweb/studies/{study}/series/{series}/instances",
        "/api/v1/dicomweb/studies/{study}",
        "/api/v1/dicomweb/studies/{study}/metadata",
        "/api/v1/dicomweb/studies/{study}/thumbnail",
        "/api/v1/dicomweb/studies/{study}/series/{series}",
        "/api/v1/dicomweb/studies/{study}/series/{series}/metadata",
        "/api/v1/dicomweb/studies/{study}/series/{series}/thumbnail",
        instance,
        f"{instance}/metadata",
        f"{instance}/rendered",
        f"{instance}/thumbnail",
        f"{instance}/frames/{{frames}}",
        f"{instance}/frames/{{frames}}/rendered",
        f"{instance}/frames/{{frames}}/thumbnail",
        f"{instance}/bulkdata/{{tag_path}}",
    } <= paths
