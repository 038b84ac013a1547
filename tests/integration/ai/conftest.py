"""Fixtures: a private STORAGE_ROOT and `archive(**dataset_attrs)` (file + receipt, as the SCP does), the AI
registry reloaded for each test (tests change the plugin settings), and the API fixtures of tests/integration/api."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from noctis_pro.ai.analyzers import registry_reset
from tests.integration.api.conftest import (
    api,
    api_settings,
    auth_headers,
    database_url,
    radiologist,
    study_make,
    token,
)
from tests.integration.django.receipts import archive, storage_root

__all__ = [
    "api",
    "api_settings",
    "archive",
    "auth_headers",
    "database_url",
    "radiologist",
    "storage_root",
    "study_make",
    "token",
]


@pytest.fixture(autouse=True)
def _fresh_registry(settings: object) -> Iterator[None]:
    settings.AI_AUTO_ANALYZERS = []  # type: ignore[attr-defined]  # the tests say what they queue
    registry_reset()
    yield
    registry_reset()
