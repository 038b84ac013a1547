"""/api/v1/nodes, /api/v1/studies/{uid}/send, /api/v1/transfers: admin role only; validation answers 400 naming
the field; echo against a real dcmtk storescp; a send is a pending transfer plus a real Celery message on Redis."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from noctis_pro.contracts.nodes import TASK_TRANSFER_RUN
from tests.conftest import free_port
from tests.integration.api.conftest import MadeStudy, orm, study_make
from tests.integration.nodes.conftest import StoreScp

__all__ = ["study_make"]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/4")
NODE = {"name": "reading-room", "ae_title": "WS1", "host": "127.0.0.1", "port": 11112}


@pytest.fixture
async def admin_headers(transactional_db: None) -> dict[str, str]:
    def make() -> str:
        from django.contrib.auth.models import Group, User

        from noctis_pro.accounts.services import api_token_create

        user = User.objects.create_user(username="admin.ann")
        user.groups.add(Group.objects.get_or_create(name="admin")[0])
        return api_token_create(user=user, name="tests")

    return {"Authorization": f"Bearer {await orm(make)}"}


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    """The Celery broker the app sends to (the test's Redis): its default queue emptied before and after."""
    client = redis.Redis.from_url(REDIS_URL)
    client.delete("celery")
    yield client
    client.delete("celery")


def _queued_tasks(client: redis.Redis) -> list[tuple[str, Any]]:
    return [
        (message["headers"]["task"], message["headers"]["argsrepr"])
        for message in (json.loads(raw) for raw in client.lrange("celery", 0, -1))
    ]


ROUTES = [
    ("GET", "/api/v1/nodes"),
    ("POST", "/api/v1/nodes"),
    ("PATCH", "/api/v1/nodes/1"),
    ("DELETE", "/api/v1/nodes/1"),
    ("POST", "/api/v1/nodes/1/echo"),
    ("POST", "/api/v1/nodes/1/query"),
    ("POST", "/api/v1/nodes/1/retrieve"),
    ("POST", "/api/v1/studies/1.2.3/send"),
    ("GET", "/api/v1/transfers"),
    ("GET", "/api/v1/transfers/1"),
]


async def test_node_routes_are_401_without_credentials_and_403_for_other_roles(
    api: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    for method, path in ROUTES:  # one test: each transactional test costs a database flush
        assert (await api.request(method, path, json={})).status_code == 401, path
        forbidden = await api.request(method, path, json={}, headers=auth_headers)  # a radiologist's token
        assert (forbidden.status_code, forbidden.json()) == (
            403,
            {"detail": "nodes and transfers are for the admin role"},
        ), path


async def test_node_create_list_update_delete(api: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    created = await api.post("/api/v1/nodes", json={**NODE, "may_query": False}, headers=admin_headers)
    assert created.status_code == 201, created.text
    node = created.json()
    assert {k: node[k] for k in (*NODE, "may_store", "may_query", "may_receive")} == {
        **NODE, "may_store": True, "may_query": False, "may_receive": True,
    }  # fmt: skip

    listed = await api.get("/api/v1/nodes", headers=admin_headers)
    assert [n["name"] for n in listed.json()] == ["reading-room"]

    patched = await api.patch(f"/api/v1/nodes/{node['id']}", json={"port": 104}, headers=admin_headers)
    assert patched.status_code == 200
    assert (patched.json()["port"], patched.json()["ae_title"]) == (104, "WS1")

    assert (await api.delete(f"/api/v1/nodes/{node['id']}", headers=admin_headers)).status_code == 204
    assert (await api.get(f"/api/v1/nodes/{node['id']}", headers=admin_headers)).status_code == 404
    assert (await api.delete(f"/api/v1/nodes/{node['id']}", headers=admin_headers)).status_code == 404


BAD_NODES = [
    ({"ae_title": "BAD\\AE"}, "ae_title may hold only printable ASCII characters other than backslash"),
    ({"ae_title": "  "}, "ae_title is required"),
    ({"ae_title": "A" * 17}, "ae_title: String should have at most 16 characters"),
    ({"host": "bad host"}, "host is not an IP address or host name"),
    ({"port": 0}, "port: Input should be greater than or equal to 1"),
    ({"port": "x"}, "port: Input should be a valid integer"),
    ({"name": ""}, "name is required"),
]


async def test_node_create_refuses_bad_values_with_400_naming_the_field(
    api: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for change, message in BAD_NODES:
        response = await api.post("/api/v1/nodes", json={**NODE, **change}, headers=admin_headers)
        assert response.status_code == 400, change
        assert message in response.json()["detail"]
    assert (await api.get("/api/v1/nodes", headers=admin_headers)).json() == []


async def test_node_create_refuses_a_taken_name_or_ae_title_with_409(
    api: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert (await api.post("/api/v1/nodes", json=NODE, headers=admin_headers)).status_code == 201
    same_ae = await api.post("/api/v1/nodes", json={**NODE, "name": "other"}, headers=admin_headers)
    assert (same_ae.status_code, same_ae.json()) == (409, {"detail": "a node with this AE title exists already"})
    same_name = await api.post("/api/v1/nodes", json={**NODE, "ae_title": "WS2"}, headers=admin_headers)
    assert (same_name.status_code, same_name.json()) == (409, {"detail": "a node with this name exists already"})


async def test_echo_reports_a_real_peer_and_a_silent_one(
    api: httpx.AsyncClient, admin_headers: dict[str, str], storescp: StoreScp
) -> None:
    peer = await api.post(
        "/api/v1/nodes", json={**NODE, "ae_title": storescp.ae_title, "port": storescp.port}, headers=admin_headers
    )
    ok = await api.post(f"/api/v1/nodes/{peer.json()['id']}/echo", headers=admin_headers)
    assert ok.status_code == 200
    assert ok.json()["ok"] is True
    assert ok.json()["status"] == 0

    silent = await api.post("/api/v1/nodes", json={**NODE, "name": "gone", "ae_title": "GONE", "port": free_port()},
                            headers=admin_headers)  # fmt: skip
    failed = (await api.post(f"/api/v1/nodes/{silent.json()['id']}/echo", headers=admin_headers)).json()
    assert failed["ok"] is False
    assert "no answer" in failed["message"]


async def test_send_queues_a_transfer_and_a_celery_message(
    api: httpx.AsyncClient, admin_headers: dict[str, str], study_make: Callable[..., Awaitable[MadeStudy]],
    broker: redis.Redis,
) -> None:  # fmt: skip
    study = await study_make(modalities=("CT", "MR"))
    node = (await api.post("/api/v1/nodes", json=NODE, headers=admin_headers)).json()

    sent = await api.post(
        f"/api/v1/studies/{study.study_instance_uid}/send",
        json={"node": "reading-room", "series_uid": study.series_instance_uids[1]},
        headers=admin_headers,
    )
    assert sent.status_code == 202, sent.text
    transfer = sent.json()
    assert (transfer["kind"], transfer["status"], transfer["node_id"]) == ("send", "pending", node["id"])
    assert transfer["series_instance_uid"] == study.series_instance_uids[1]
    assert _queued_tasks(broker) == [(TASK_TRANSFER_RUN, f"[{transfer['id']}]")]

    listed = await api.get("/api/v1/transfers", params={"status": "pending"}, headers=admin_headers)
    assert [t["id"] for t in listed.json()] == [transfer["id"]]
    one = await api.get(f"/api/v1/transfers/{transfer['id']}", headers=admin_headers)
    assert one.json()["study_instance_uid"] == study.study_instance_uid


async def test_send_refuses_unknown_nodes_studies_and_series(
    api: httpx.AsyncClient, admin_headers: dict[str, str], study_make: Callable[..., Awaitable[MadeStudy]],
    broker: redis.Redis,
) -> None:  # fmt: skip
    study = await study_make()
    await api.post("/api/v1/nodes", json=NODE, headers=admin_headers)
    uid = study.study_instance_uid
    cases = [
        (uid, {"node": "nope"}, 400, "node 'nope' is not a known node"),
        ("1.2.3.4.5", {"node": "reading-room"}, 404, "no study 1.2.3.4.5"),
        ("1.2..3", {"node": "reading-room"}, 400, "study_uid '1.2..3' is not digits and dots"),
        (uid, {"node": "reading-room", "series_uid": "9.9.9"}, 400, f"no series 9.9.9 in study {uid}"),
        (uid, {}, 400, "node: Field required"),
    ]
    for study_uid, body, status, message in cases:
        response = await api.post(f"/api/v1/studies/{study_uid}/send", json=body, headers=admin_headers)
        assert (response.status_code, response.json()["detail"]) == (status, message)
    assert (await api.get("/api/v1/transfers", headers=admin_headers)).json() == []
    assert _queued_tasks(broker) == []


async def test_query_validates_and_reports_a_node_that_does_not_answer(
    api: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    node = (await api.post("/api/v1/nodes", json={**NODE, "port": free_port()}, headers=admin_headers)).json()
    path = f"/api/v1/nodes/{node['id']}/query"
    cases = [
        ({"level": "SERIES"}, 400, "StudyInstanceUID is required at SERIES level"),
        ({"filters": {"PatientAge": "40"}}, 400, "PatientAge cannot be matched at STUDY level"),
        ({"filters": {"StudyDate": "2026-01-01"}}, 400, "StudyDate must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD"),
        ({"level": "IMAGE"}, 400, "level: Input should be 'STUDY' or 'SERIES'"),
        ({"filters": {"PatientName": "DOE*"}}, 502, f"no association with WS1@127.0.0.1:{node['port']}"),
    ]
    for body, status, message in cases:
        response = await api.post(path, json=body, headers=admin_headers)
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]


async def test_retrieve_queues_a_transfer_from_the_node(
    api: httpx.AsyncClient, admin_headers: dict[str, str], broker: redis.Redis
) -> None:
    node = (await api.post("/api/v1/nodes", json=NODE, headers=admin_headers)).json()
    bad = await api.post(f"/api/v1/nodes/{node['id']}/retrieve", json={"study_uid": "x"}, headers=admin_headers)
    assert (bad.status_code, bad.json()["detail"]) == (400, "study_uid 'x' is not digits and dots")
    queued = await api.post(f"/api/v1/nodes/{node['id']}/retrieve", json={"study_uid": "1.2.3"}, headers=admin_headers)
    assert queued.status_code == 202
    assert (queued.json()["kind"], queued.json()["status"]) == ("retrieve", "pending")
    assert _queued_tasks(broker) == [(TASK_TRANSFER_RUN, f"[{queued.json()['id']}]")]


async def test_openapi_documents_the_node_routes(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/api/v1/openapi.json")).json()["paths"]
    node = "/api/v1/nodes/{node_id}"
    documented = ["/api/v1/nodes", f"{node}/echo", f"{node}/query", f"{node}/retrieve", "/api/v1/transfers",
                  "/api/v1/studies/{study_uid}/send"]  # fmt: skip
    assert [path for path in documented if path not in paths] == []
    assert "403" in paths["/api/v1/nodes"]["get"]["responses"]
