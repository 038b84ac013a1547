from tests.integration.django.receipts import archive, storage_root

__all__ = ["archive", "storage_root"]
