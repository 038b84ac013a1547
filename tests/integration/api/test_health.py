"""GET /api/v1/health: 200 when PostgreSQL and Redis answer, 503 (and still serving) when one does not."""

from __future__ import annotations

import httpx

from fastapi_app.settings import Settings
from tests.conftest import free_port


async def test_health_ok_when_database_and_redis_answer(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_health_503_when_redis_is_down(api_settings: Settings, api_for) -> None:
    settings = api_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async for client in api_for(settings):
        response = await client.get("/api/v1/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert body["database"] == "ok"
        assert body["redis"].startswith("error")


async def test_health_503_when_database_is_down(api_settings: Settings, api_for) -> None:
    settings = api_settings.model_copy(update={"database_url": f"postgres://postgres@127.0.0.1:{free_port()}/x"})
    async for client in api_for(settings):
        response = await client.get("/api/v1/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert body["database"].startswith("error")
        assert body["redis"] == "ok"


async def test_requests_get_503_not_500_when_database_is_down(api_settings: Settings, api_for, token: str) -> None:
    settings = api_settings.model_copy(update={"database_url": f"postgres://postgres@127.0.0.1:{free_port()}/x"})
    async for client in api_for(settings):
        response = await client.get("/api/v1/studies", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503
        assert response.json() == {"detail": "database unavailable, retry later"}
