"""The JSON REST study list, study detail and series instances, and the audit rows they write."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from fastapi_app import sql
from fastapi_app.study_search import dicom_name_pattern, study_query_build
from tests.integration.api.conftest import MadeStudy, orm

STUDIES = "/api/v1/studies"
StudyMaker = Callable[..., Awaitable[MadeStudy]]


async def _uids(api: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    response = await api.get(STUDIES, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["study_instance_uid"] for item in response.json()["items"]]


async def test_studies_need_authentication(api: httpx.AsyncClient) -> None:
    response = await api.get(STUDIES)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_studies_list_item_shape(
    api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker
) -> None:
    study = await study_make(patient_name="DOE^JANE", modalities=("CT", "SR"), accession_number="A-1")
    response = await api.get(STUDIES, headers=auth_headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (1, 50, 0)
    item = body["items"][0]
    assert item == {
        "study_instance_uid": study.study_instance_uid,
        "patient_name": "DOE^JANE",
        "patient_id": study.patient_id,
        "patient_birth_date": "1970-01-01",
        "patient_sex": "F",
        "study_date": "2026-01-15",
        "study_time": "10:15:00",
        "accession_number": "A-1",
        "study_description": "Chest",
        "referring_physician_name": "HOUSE^GREGORY",
        "modalities": ["CT", "SR"],
        "number_of_series": 2,
        "number_of_instances": 4,
        "received_at": item["received_at"],
    }
    assert dt.datetime.fromisoformat(item["received_at"]).tzinfo is not None


async def test_patient_name_wildcards_are_case_insensitive(
    api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker
) -> None:
    jane = (await study_make(patient_name="Doe^Jane")).study_instance_uid
    john = (await study_make(patient_name="DOE^JOHN")).study_instance_uid
    await study_make(patient_name="ROE^JANE")
    percent = (await study_make(patient_name="100%^MAN")).study_instance_uid

    assert set(await _uids(api, auth_headers, patient_name="doe*")) == {jane, john}
    assert await _uids(api, auth_headers, patient_name="doe^j?ne") == [jane]
    assert await _uids(api, auth_headers, patient_name="DOE^JANE") == [jane]  # no wildcard: the whole name
    assert await _uids(api, auth_headers, patient_name="doe") == []
    assert await _uids(api, auth_headers, patient_name="100%*") == [percent]  # % is literal, not a wildcard
    assert await _uids(api, auth_headers, patient_name="1_0*") == []  # so is _


async def test_filter_by_patient_id_accession_and_modality(
    api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker
) -> None:
    ct = (await study_make(modalities=("CT",), patient_id="P-CT", accession_number="ACC-CT")).study_instance_uid
    mr_ct = (await study_make(modalities=("MR", "CT"))).study_instance_uid
    await study_make(modalities=("CTX",))  # a made-up code containing "CT" must not match CT
    await study_make(modalities=("MR",))

    assert set(await _uids(api, auth_headers, modality="CT")) == {ct, mr_ct}
    assert set(await _uids(api, auth_headers, modality="ct")) == {ct, mr_ct}
    assert await _uids(api, auth_headers, patient_id="P-CT") == [ct]
    assert await _uids(api, auth_headers, accession_number="ACC-CT") == [ct]
    assert await _uids(api, auth_headers, modality="PT") == []
    response = await api.get(STUDIES, params={"modality": "C%"}, headers=auth_headers)
    assert response.status_code == 400


async def test_filter_by_study_date_range_in_both_formats(
    api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker
) -> None:
    jan = (await study_make(study_date=dt.date(2026, 1, 10))).study_instance_uid
    feb = (await study_make(study_date=dt.date(2026, 2, 10))).study_instance_uid
    mar = (await study_make(study_date=dt.date(2026, 3, 10))).study_instance_uid
    await study_make(study_date=None)

    assert set(await _uids(api, auth_headers, study_date_from="2026-02-01")) == {feb, mar}
    assert set(await _uids(api, auth_headers, study_date_to="20260210")) == {jan, feb}
    both = await _uids(api, auth_headers, study_date_from="20260201", study_date_to="2026-02-28")
    assert both == [feb]
    response = await api.get(STUDIES, params={"study_date_from": "2026-13-01"}, headers=auth_headers)
    assert response.status_code == 400
    assert "study_date_from" in response.json()["detail"]


async def test_sort_and_paging(api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker) -> None:
    by_date = [(await study_make(study_date=dt.date(2026, 1, day))).study_instance_uid for day in (5, 1, 9, 3, 7)]
    ascending = [by_date[i] for i in (1, 3, 0, 4, 2)]

    assert await _uids(api, auth_headers, sort="study_date") == ascending
    assert await _uids(api, auth_headers) == ascending[::-1]  # default: newest study first
    assert await _uids(api, auth_headers, sort="received_at") == by_date
    assert await _uids(api, auth_headers, sort="-received_at") == by_date[::-1]

    page = (await api.get(STUDIES, params={"sort": "study_date", "limit": 2, "offset": 2}, headers=auth_headers)).json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    assert [i["study_instance_uid"] for i in page["items"]] == ascending[2:4]
    last = (await api.get(STUDIES, params={"sort": "study_date", "limit": 2, "offset": 4}, headers=auth_headers)).json()
    assert last["total"] == 5
    assert [i["study_instance_uid"] for i in last["items"]] == ascending[4:]
    beyond = (await api.get(STUDIES, params={"limit": 2, "offset": 10}, headers=auth_headers)).json()
    assert (beyond["total"], beyond["items"]) == (5, [])


async def test_sort_by_patient_name_and_accession(
    api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker
) -> None:
    b = (await study_make(patient_name="B^B", accession_number="A2")).study_instance_uid
    a = (await study_make(patient_name="A^A", accession_number="A3")).study_instance_uid
    c = (await study_make(patient_name="C^C", accession_number="A1")).study_instance_uid
    assert await _uids(api, auth_headers, sort="patient_name") == [a, b, c]
    assert await _uids(api, auth_headers, sort="-patient_name") == [c, b, a]
    assert await _uids(api, auth_headers, sort="accession_number") == [c, b, a]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"sort": "patient_id"}, "patient_id"),
        ({"sort": "study_date; DROP TABLE pacs_study"}, "DROP TABLE"),
        ({"limit": 1001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
async def test_bad_list_parameters_are_400_naming_them(
    api: httpx.AsyncClient, auth_headers: dict[str, str], params: dict[str, Any], needle: str
) -> None:
    response = await api.get(STUDIES, params=params, headers=auth_headers)
    assert response.status_code == 400
    assert needle in response.json()["detail"]


async def test_study_detail_lists_series_and_writes_audit(
    api: httpx.AsyncClient, auth_headers: dict[str, str], radiologist: Any, study_make: StudyMaker
) -> None:
    from noctis_pro.core.models import AuditEvent

    study = await study_make(modalities=("CT", "MR"), instances_per_series=3, thumbnail="thumbs/x.png")
    response = await api.get(
        f"{STUDIES}/{study.study_instance_uid}", headers={**auth_headers, "X-Forwarded-For": "203.0.113.9, 10.1.2.3"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["study_instance_uid"] == study.study_instance_uid
    assert body["modalities"] == ["CT", "MR"]
    assert [(s["series_number"], s["modality"], s["number_of_instances"]) for s in body["series"]] == [
        (1, "CT", 3),
        (2, "MR", 3),
    ]
    assert set(body["series"][0]) == {
        "series_instance_uid",
        "modality",
        "series_number",
        "series_description",
        "body_part_examined",
        "number_of_instances",
        "has_thumbnail",
    }
    assert body["series"][0]["has_thumbnail"] is True

    events = await orm(lambda: list(AuditEvent.objects.exclude(action="token.create").values()))
    assert len(events) == 1
    event = events[0]
    assert (event["user_id"], event["username"], event["action"]) == (radiologist.id, "rad.jones", "study.view")
    assert (event["object_type"], event["object_id"], event["remote_addr"]) == (
        "study",
        study.study_instance_uid,
        "10.1.2.3",
    )


async def test_study_detail_unknown_is_404_and_malformed_is_400(
    api: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    from noctis_pro.core.models import AuditEvent

    missing = await api.get(f"{STUDIES}/1.2.3.4.5", headers=auth_headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no study 1.2.3.4.5"}
    malformed = await api.get(f"{STUDIES}/1.2.abc", headers=auth_headers)
    assert malformed.status_code == 400
    assert "StudyInstanceUID" in malformed.json()["detail"]
    too_long = await api.get(f"{STUDIES}/{'1.' * 40}1", headers=auth_headers)
    assert too_long.status_code == 400
    assert await orm(lambda: AuditEvent.objects.filter(action__endswith=".view").count()) == 0


async def test_series_instances_in_order_and_audited(
    api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker
) -> None:
    from noctis_pro.core.models import AuditEvent

    study = await study_make(modalities=("CT",), instances_per_series=3)
    series_uid = study.series_instance_uids[0]
    response = await api.get(f"/api/v1/series/{series_uid}/instances", headers=auth_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["study_instance_uid"] == study.study_instance_uid
    assert body["series_instance_uid"] == series_uid
    assert [i["instance_number"] for i in body["instances"]] == [1, 2, 3]
    assert body["instances"][0] == {
        "sop_instance_uid": body["instances"][0]["sop_instance_uid"],
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
        "instance_number": 1,
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
        "rows": 64,
        "columns": 64,
        "number_of_frames": 1,
        "size_bytes": 8001,
    }
    views = AuditEvent.objects.filter(action__endswith=".view")
    actions = await orm(lambda: list(views.values_list("action", "object_type", "object_id", "detail")))
    assert actions == [("series.view", "series", series_uid, {"study_instance_uid": study.study_instance_uid})]

    assert (await api.get("/api/v1/series/9.9.9/instances", headers=auth_headers)).status_code == 404
    assert (await api.get("/api/v1/series/x/instances", headers=auth_headers)).status_code == 400


def test_dicom_name_pattern_translates_wildcards_and_escapes_like() -> None:
    assert dicom_name_pattern("doe*") == "DOE%"
    assert dicom_name_pattern("d?e") == "D_E"
    assert dicom_name_pattern("50%_x\\") == "50\\%\\_X\\\\"


async def test_list_query_uses_the_name_trigram_index(database_url: str, study_make: StudyMaker) -> None:
    """With sequential scans off, the plan for a name search goes through patient_name_trgm."""
    import asyncpg

    await study_make(patient_name="DOE^JANE")
    q = study_query_build(patient_name="doe*")
    conn = await asyncpg.connect(database_url, server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        await conn.execute("SET enable_seqscan = off")
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + sql.STUDIES_SEARCH[q.sort], *q.filter_binds(), q.limit, q.offset
        )
    finally:
        await conn.close()
    assert "patient_name_trgm" in str(plan)
