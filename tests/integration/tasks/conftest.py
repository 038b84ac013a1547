"""Fixtures: a private STORAGE_ROOT/MEDIA_ROOT and `archive(**dataset_attrs)` (file + receipt, as the SCP does)."""

from tests.integration.django.receipts import archive, storage_root

__all__ = ["archive", "storage_root"]
