"""GET/POST /api/v1/studies/{uid}/analyses against the FastAPI app and the test database: listing with results,
queueing one per image series, no duplicate while one waits, clear 4xx for bad input, audit rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.integration.api.conftest import MadeStudy, orm

pytestmark = pytest.mark.django_db(transaction=True)
StudyMaker = Callable[..., Awaitable[MadeStudy]]


def path(study_uid: str) -> str:
    return f"/api/v1/studies/{study_uid}/analyses"


async def test_analyses_need_authentication(api: httpx.AsyncClient, study_make: StudyMaker) -> None:
    study = await study_make()
    assert (await api.get(path(study.study_instance_uid))).status_code == 401
    assert (await api.post(path(study.study_instance_uid), json={"analyzer": "image_quality"})).status_code == 401


async def test_post_queues_one_per_image_series_once_and_get_lists_them(
    api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker
) -> None:
    study = await study_make(modalities=("CT", "MR", "SR"))
    response = await api.post(path(study.study_instance_uid), json={"analyzer": "image_quality"}, headers=auth_headers)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["queued"] == 2  # CT and MR; the SR series has no pixels
    assert {a["series_uid"] for a in body["analyses"]} == set(study.series_instance_uids[:2])
    assert {(a["status"], a["requested_by"], a["attempts"]) for a in body["analyses"]} == {
        ("pending", "api:rad.jones", 0)
    }

    again = await api.post(path(study.study_instance_uid), json={"analyzer": "image_quality"}, headers=auth_headers)
    assert again.json()["queued"] == 0  # already waiting
    one = await api.post(path(study.study_instance_uid), json={"analyzer": "radiation_dose"}, headers=auth_headers)
    assert one.json()["queued"] == 1
    assert one.json()["analyses"][0]["series_uid"] is None  # study scope

    def finish() -> None:
        from noctis_pro.ai.models import AIAnalysis

        AIAnalysis.objects.filter(analyzer="radiation_dose").update(
            status="done", attempts=1, result={"ctdivol_max_mgy": 9.5}, duration_ms=12
        )

    await orm(finish)
    listed = await api.get(path(study.study_instance_uid), headers=auth_headers)
    assert listed.status_code == 200
    rows = listed.json()
    assert sorted(a["analyzer"] for a in rows) == ["image_quality", "image_quality", "radiation_dose"]
    dose = next(a for a in rows if a["analyzer"] == "radiation_dose")
    assert (dose["status"], dose["result"], dose["duration_ms"]) == ("done", {"ctdivol_max_mgy": 9.5}, 12)
    assert (dose["label"], dose["summary"]) == ("dose", "CTDIvol 9.5 mGy")  # what the worklist's badge says
    assert {(a["label"], a["summary"]) for a in rows if a["analyzer"] == "image_quality"} == {("quality", "pending")}

    def audited() -> list[str]:
        from noctis_pro.core.models import AuditEvent

        return list(
            AuditEvent.objects.filter(object_id=study.study_instance_uid)
            .order_by("pk")
            .values_list("action", flat=True)
        )

    assert await orm(audited) == ["study.analysis.request"] * 3 + ["study.analyses.view"]


async def test_a_referrer_reads_results_but_may_not_ask_for_an_analysis(
    api: httpx.AsyncClient, study_make: StudyMaker
) -> None:
    study = await study_make()

    def referrer_token() -> str:
        from django.contrib.auth.models import Group, User

        from noctis_pro.accounts.services import api_token_create

        user = User.objects.create_user("ref.smith", password="x-Unused-1")
        user.groups.add(Group.objects.get_or_create(name="referrer")[0])
        return api_token_create(user=user)

    headers = {"Authorization": f"Bearer {await orm(referrer_token)}"}
    assert (await api.get(path(study.study_instance_uid), headers=headers)).status_code == 200
    refused = await api.post(path(study.study_instance_uid), json={"analyzer": "image_quality"}, headers=headers)
    assert refused.status_code == 403
    assert "analysis.request" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"analyzer": "oracle"}, 400, "unknown analyzer 'oracle'"),
        ({}, 400, "analyzer: Field required"),
        ({"analyzer": "radiation_dose", "series_uid": "1.2.3"}, 400, "analyses a whole study"),
        ({"analyzer": "image_quality", "series_uid": "1.2..3"}, 400, "SeriesInstanceUID"),
        ({"analyzer": "image_quality", "series_uid": "1.2.3.4"}, 404, "no image series 1.2.3.4"),
    ],
)
async def test_post_bad_input_is_a_clear_4xx(
    api: httpx.AsyncClient, auth_headers: dict[str, str], study_make: StudyMaker, body: dict[str, Any], status: int,
    message: str,
) -> None:  # fmt: skip
    study = await study_make()
    response = await api.post(path(study.study_instance_uid), json=body, headers=auth_headers)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


async def test_unknown_study_is_404(api: httpx.AsyncClient, auth_headers: dict[str, str]) -> None:
    uid = generate_uid()
    assert (await api.get(path(uid), headers=auth_headers)).status_code == 404
    response = await api.post(path(uid), json={"analyzer": "radiation_dose"}, headers=auth_headers)
    assert response.status_code == 404
    assert response.json()["detail"] == f"no study {uid}"
