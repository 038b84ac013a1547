"""Roles and facilities, enforced the same way on every page and API route: one table of routes, one table of
users, every pair checked. A study outside the user's facilities is 404 (as if it did not exist), a role that
may not do something is 403, an anonymous visitor is sent to the login page (pages) or 401 (API)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
import redis.asyncio as redis
from django.test import Client
from websockets.asyncio.client import connect

from noctis_pro.contracts import events
from tests.integration.api.conftest import REDIS_URL
from tests.integration.roles.conftest import USERS, World

pytestmark = pytest.mark.django_db(transaction=True)

ALL = {"A", "B", "U"}
VISIBLE: dict[str, set[str] | None] = {  # None: the role may not view studies at all (403)
    "admin": ALL,
    "admin_group": ALL,
    "radiologist_a": {"A"},
    "technologist_a": {"A"},
    "referrer_a": {"A"},
    "radiologist_ab": {"A", "B"},
    "radiologist_none": {"U"},  # belongs to no facility: sees the unassigned studies only
    "no_role_a": None,
}
assert set(VISIBLE) == set(USERS)

# Routes naming one study: {s} study, {se} series, {i} instance.
PAGE_ROUTES = ["/studies/{s}/", "/studies/{s}/view", "/worklist/rows/{s}/"]
API_ROUTES = [
    "/api/v1/studies/{s}",
    "/api/v1/series/{se}/instances",
    "/api/v1/dicomweb/studies/{s}/metadata",
    "/api/v1/dicomweb/studies/{s}/series",
    "/api/v1/dicomweb/studies/{s}/series/{se}/instances/{i}",
    "/api/v1/dicomweb/studies/{s}/series/{se}/instances/{i}/rendered",
    "/api/v1/dicomweb/studies/{s}/series/{se}/metadata",
]
# Routes that list studies: the uids they return must be exactly the visible ones.
API_LISTS = ["/api/v1/studies", "/api/v1/dicomweb/studies", "/api/v1/dicomweb/series", "/api/v1/dicomweb/instances"]


def _url(route: str, world: World, key: str) -> str:
    return route.format(s=world.studies[key], se=world.series[key], i=world.sops[key])


def _client_for(world: World, name: str) -> Client:
    client = Client()
    client.force_login(world.users[name])
    return client


@pytest.mark.parametrize("name", sorted(USERS))
def test_pages_show_only_the_studies_of_the_users_facilities(world: World, name: str) -> None:
    client = _client_for(world, name)
    visible = VISIBLE[name]
    for route in PAGE_ROUTES:
        for key in sorted(ALL):
            status = client.get(_url(route, world, key)).status_code
            expected = 403 if visible is None else 200 if key in visible else 404
            assert status == expected, (name, route, key)
    worklist = client.get("/")
    if visible is None:
        assert worklist.status_code == 403
        return
    assert worklist.status_code == 200
    shown = {key for key in ALL if world.studies[key].encode() in worklist.content}
    assert shown == visible


@pytest.mark.parametrize("name", sorted(USERS))
def test_only_admins_open_the_admin(world: World, name: str) -> None:
    response = _client_for(world, name).get("/admin/")
    if name.startswith("admin"):
        assert response.status_code == 200
    else:
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_the_admin_role_manages_the_admin_without_being_superuser(world: World) -> None:
    client = _client_for(world, "admin_group")
    assert client.get("/admin/facilities/facility/").status_code == 200
    assert client.get("/admin/auth/user/").status_code == 200
    referrer = _client_for(world, "referrer_a")
    assert referrer.get("/admin/facilities/facility/").status_code == 302


def test_anonymous_pages_redirect_to_login(world: World) -> None:
    client = Client()
    for route in ["/", *PAGE_ROUTES]:
        response = client.get(_url(route, world, "A"))
        assert response.status_code == 302, route
        assert response["Location"].startswith("/login/"), route


@pytest.mark.parametrize("name", sorted(USERS))
def test_api_routes_apply_the_same_rule(world: World, api_server: str, name: str) -> None:
    visible = VISIBLE[name]
    headers = {"Authorization": f"Bearer {world.tokens[name]}"}
    with httpx.Client(base_url=api_server, headers=headers, timeout=30) as http:
        for route in API_ROUTES:
            for key in sorted(ALL):
                status = http.get(_url(route, world, key)).status_code
                expected = 403 if visible is None else 200 if key in visible else 404
                assert status == expected, (name, route, key, status)
        for route in API_LISTS:
            response = http.get(route)
            if visible is None:
                assert response.status_code == 403, route
                continue
            assert response.status_code == 200, (route, response.text)
            shown = {key for key in ALL if world.studies[key] in response.text}
            assert shown == visible, (name, route)


def test_api_anonymous_is_401(world: World, api_server: str) -> None:
    with httpx.Client(base_url=api_server, timeout=30) as http:
        for route in [*API_ROUTES, *API_LISTS]:
            assert http.get(_url(route, world, "A")).status_code == 401, route


def test_stow_is_for_roles_that_store(world: World, api_server: str) -> None:
    """STOW-RS (POST) needs study.store: a referrer or radiologist is refused before the body is read."""
    for name, allowed in (("referrer_a", False), ("radiologist_a", False), ("technologist_a", True)):
        headers = {"Authorization": f"Bearer {world.tokens[name]}", "Content-Type": "application/dicom"}
        status = httpx.post(f"{api_server}/api/v1/dicomweb/studies", headers=headers, content=b"x").status_code
        assert (status != 403) == allowed, (name, status)


def _study_updated(uid: str) -> events.Event:
    return events.StudyUpdated(study_instance_uid=uid, number_of_series=1, number_of_instances=1)


def _analysis_completed(uid: str) -> events.Event:
    return events.AnalysisCompleted(analysis_id=1, study_instance_uid=uid, analyzer="study_inventory", status="done")


async def _events_seen(
    server: str, token: str, uids: list[str], make: Callable[[str], events.Event] = _study_updated
) -> set[str]:
    """Publish an event (study.updated unless told) for each uid; the uids the socket of `token`'s user receives."""
    seen: set[str] = set()
    ws_url = server.replace("http://", "ws://") + "/ws/"
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
        assert hello["type"] == "hello"
        client = redis.from_url(REDIS_URL)
        try:
            for uid in uids:
                await client.publish(events.CHANNEL, make(uid).to_json())
            await client.publish(events.CHANNEL, events.TaskEcho(token="end-" + token[:8]).to_json())
        finally:
            await client.aclose()
        async with asyncio.timeout(5):
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "task.echo" and message["token"] == "end-" + token[:8]:
                    return seen
                if message.get("type") == make(uids[0]).type and message["study_instance_uid"] in uids:
                    seen.add(message["study_instance_uid"])


@pytest.mark.parametrize("name", ["admin", "radiologist_a", "referrer_a", "radiologist_ab", "radiologist_none"])
def test_ws_relays_study_events_only_for_visible_studies(world: World, api_server: str, name: str) -> None:
    uids = [world.studies[k] for k in sorted(ALL)]
    seen = asyncio.run(_events_seen(api_server, world.tokens[name], uids))
    assert seen == {world.studies[k] for k in VISIBLE[name] or ()}


@pytest.mark.parametrize("name", ["radiologist_a", "admin"])
def test_ws_relays_analysis_completed_only_for_visible_studies(world: World, api_server: str, name: str) -> None:
    """The worklist's AI badge follows analysis.completed: it is filtered by facility like study.updated."""
    uids = [world.studies[k] for k in sorted(ALL)]
    seen = asyncio.run(_events_seen(api_server, world.tokens[name], uids, _analysis_completed))
    assert seen == {world.studies[k] for k in VISIBLE[name] or ()}


def test_ws_refuses_a_user_without_a_role(world: World, api_server: str) -> None:
    from websockets.exceptions import InvalidStatus

    async def attempt() -> None:
        ws_url = api_server.replace("http://", "ws://") + "/ws/"
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {world.tokens['no_role_a']}"}):
            pass

    with pytest.raises(InvalidStatus):
        asyncio.run(attempt())


def test_mapping_an_ae_later_claims_its_unassigned_studies(world: World) -> None:
    from noctis_pro.facilities.models import Facility, FacilityAE
    from noctis_pro.facilities.services import facility_ae_studies_claim
    from noctis_pro.pacs.models import Study

    ae = FacilityAE.objects.create(ae_title="UNKNOWN_AE", facility=Facility.objects.get(name="Site B"))
    assert facility_ae_studies_claim(ae=ae) == 1
    assert Study.objects.get(study_instance_uid=world.studies["U"]).facility.name == "Site B"
    client = _client_for(world, "radiologist_none")
    assert client.get(f"/studies/{world.studies['U']}/").status_code == 404
    assert _client_for(world, "radiologist_ab").get(f"/studies/{world.studies['U']}/").status_code == 200
