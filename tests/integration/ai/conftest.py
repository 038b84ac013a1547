"""Fixtures: a private STORAGE_ROOT and `archive(**dataset_attrs)` (file + receipt, as the SCP does), the AI
registry reloaded for each test (tests change the plugin settings), and CT series factories."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from noctis_pro.ai.analyzers import registry_reset
from tests.integration.django.receipts import archive, storage_root

__all__ = ["archive", "storage_root"]


@pytest.fixture(autouse=True)
def _fresh_registry(settings: object) -> Iterator[None]:
    settings.AI_AUTO_ANALYZERS = []  # type: ignore[attr-defined]  # the tests say what they queue
    registry_reset()
    yield
    registry_reset()
