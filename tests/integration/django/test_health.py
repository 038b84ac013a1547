"""GET /health/: 200 when PostgreSQL and Redis answer, 503 (saying which) when one does not. No login."""

import pytest
from django.test import Client

from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def test_health_is_200_when_database_and_redis_answer(client: Client) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_health_is_503_when_redis_does_not_answer(client: Client, settings: object) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # type: ignore[attr-defined]
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "redis": "down"}
