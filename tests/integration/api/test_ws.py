"""/ws/ against a real uvicorn: the handshake is authenticated, Redis events arrive unchanged, Redis losses heal."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import pytest
import redis.asyncio as redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from fastapi_app.settings import Settings
from noctis_pro.contracts import events
from tests.conftest import free_port
from tests.integration.api.conftest import PASSWORD, REDIS_URL, orm, serving


async def _hello(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
    assert message["type"] == "hello"
    return message


async def _until(ws: ClientConnection, wanted: str, *, within: float = 5) -> str:
    """The next message equal to `wanted`, skipping events others publish on the shared channel meanwhile."""
    async with asyncio.timeout(within):
        while True:
            message = await ws.recv()
            if message == wanted:
                return message


async def _publish(text: str) -> int:
    client = redis.from_url(REDIS_URL)
    try:
        return int(await client.publish(events.CHANNEL, text))
    finally:
        await client.aclose()


async def _our_pubsub_client_ids() -> list[str]:
    """Redis ids of the app's pub/sub connections (named noctis-fastapi-<pid>; uvicorn runs in this process)."""
    client = redis.from_url(REDIS_URL, decode_responses=True)
    try:
        listing = await client.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
    finally:
        await client.aclose()
    ids = []
    for line in str(listing).splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if fields.get("name") == f"noctis-fastapi-{os.getpid()}":
            ids.append(fields["id"])
    return ids


@pytest.mark.parametrize("path", ["/ws/", "/ws"])
async def test_ws_anonymous_handshake_is_refused_with_403(live_server_url: str, path: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{live_server_url}{path}"):
            pass
    assert refused.value.response.status_code == 403


async def test_ws_wrong_token_is_refused(live_server_url: str, token: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{live_server_url}/ws/", additional_headers={"Authorization": "Bearer np_nope"}):
            pass
    assert refused.value.response.status_code == 403


async def test_ws_token_gets_hello_and_events_unchanged(live_server_url: str, token: str) -> None:
    async with connect(f"ws://{live_server_url}/ws/", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        hello = await _hello(ws)
        assert hello["user"]["username"] == "rad.jones"
        assert hello["user"]["groups"] == ["radiologist"]

        event = events.StudyUpdated(
            study_instance_uid="1.2.3." + str(uuid.uuid4().int)[:20],
            number_of_series=2,
            number_of_instances=40,
            modalities=["CT", "MR"],
        ).to_json()
        assert await _publish(event) >= 1
        assert await _until(ws, event) == event
        odd = '{"type": "x",  "name": "Müller^Jörg", "n": ' + str(uuid.uuid4().int) + "}"  # spacing kept as is
        await _publish(odd)
        assert await _until(ws, odd) == odd


async def test_ws_query_token_and_ping(live_server_url: str, token: str) -> None:
    async with connect(f"ws://{live_server_url}/ws?token={token}") as ws:
        await _hello(ws)
        await ws.send("ping")
        assert await _until(ws, '{"type":"pong"}') == '{"type":"pong"}'
        await ws.send('{"type": "ping"}')
        assert await _until(ws, '{"type":"pong"}') == '{"type":"pong"}'
        await ws.ping()  # protocol-level ping is answered too


async def test_ws_session_cookie_accepted_same_origin_only(live_server_url: str, radiologist: Any) -> None:
    from django.test import Client

    def login() -> str:
        client = Client()
        assert client.login(username=radiologist.username, password=PASSWORD)
        return client.cookies["sessionid"].value

    session_key = await orm(login)
    cookie = {"Cookie": f"sessionid={session_key}"}
    async with connect(
        f"ws://{live_server_url}/ws/", additional_headers=cookie, origin=f"http://{live_server_url}"
    ) as ws:
        assert (await _hello(ws))["user"]["username"] == "rad.jones"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{live_server_url}/ws/", additional_headers=cookie, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_ws_resubscribes_after_redis_drops_the_connection(live_server_url: str, token: str) -> None:
    async with connect(f"ws://{live_server_url}/ws/", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await _hello(ws)
        ids = await _our_pubsub_client_ids()
        assert ids
        admin = redis.from_url(REDIS_URL)
        try:
            for client_id in ids:
                await admin.execute_command("CLIENT", "KILL", "ID", client_id)
        finally:
            await admin.aclose()

        marker = json.dumps({"type": "test.marker", "id": str(uuid.uuid4())})
        async with asyncio.timeout(15):
            while True:  # publish until the relay is back; then the message must arrive unchanged
                await _publish(marker)
                try:
                    await _until(ws, marker, within=0.5)
                    break
                except TimeoutError:
                    continue


async def test_ws_subscription_is_released_on_disconnect(live_server_url: str, token: str) -> None:
    async with connect(f"ws://{live_server_url}/ws/", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await _hello(ws)
        assert len(await _our_pubsub_client_ids()) == 1
    for _ in range(100):
        if not await _our_pubsub_client_ids():
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the pub/sub connection outlived its WebSocket")


async def test_ws_handshake_is_503_when_database_is_down(api_settings: Settings, token: str) -> None:
    settings = api_settings.model_copy(update={"database_url": f"postgres://postgres@127.0.0.1:{free_port()}/x"})
    with serving(settings) as address, pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{address}/ws/", additional_headers={"Authorization": f"Bearer {token}"}):
            pass
    assert refused.value.response.status_code == 503


async def test_ws_says_hello_even_when_redis_is_down(api_settings: Settings, token: str) -> None:
    settings = api_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with serving(settings) as address:
        async with connect(f"ws://{address}/ws/", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert (await _hello(ws))["user"]["username"] == "rad.jones"
            await ws.send("ping")
            assert await _until(ws, '{"type":"pong"}') == '{"type":"pong"}'
