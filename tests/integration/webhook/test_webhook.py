"""POST /api/dicom/received/: signature checks (401), body checks (400), and indexing (200)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client

from noctis_pro.contracts import signing
from noctis_pro.pacs.models import Instance, Receipt, Study

pytestmark = pytest.mark.django_db

URL = "/api/dicom/received/"


def signed_headers(body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    signature = signing.signature_for(secret=secret or settings.WEBHOOK_SECRET, timestamp=ts, body=body)
    return {signing.TIMESTAMP_HEADER: str(ts), signing.SIGNATURE_HEADER: signature}


def post(client: Client, body: bytes, headers: dict[str, str]) -> object:
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def test_received_indexes_signed_receipts(client: Client, archive: Callable[..., Receipt]) -> None:
    receipts = [archive(instance_number=n) for n in (1, 2)]
    body = json.dumps({"receipt_ids": [r.pk for r in receipts]}).encode()
    response = post(client, body, signed_headers(body))
    assert response.status_code == 200, response.content
    payload = response.json()
    assert payload["indexed"] == 2
    assert sorted(payload["indexed_ids"]) == sorted(r.pk for r in receipts)
    assert payload["failed"] == []
    assert Instance.objects.count() == 2
    assert Study.objects.filter(study_instance_uid__in=payload["studies"]).count() == 2


def test_received_again_is_200_and_changes_nothing(client: Client, archive: Callable[..., Receipt]) -> None:
    receipt = archive()
    body = json.dumps({"receipt_ids": [receipt.pk]}).encode()
    assert post(client, body, signed_headers(body)).status_code == 200
    again = post(client, body, signed_headers(body))
    assert again.status_code == 200
    assert again.json()["indexed"] == 0
    assert again.json()["skipped_ids"] == [receipt.pk]
    assert Instance.objects.count() == 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing signature"),
        ({"secret": "not-the-secret"}, "wrong signature"),
        ({"timestamp": int(time.time()) - signing.MAX_SKEW_SECONDS - 60}, "stale signature"),
    ],
    ids=["missing", "wrong", "stale"],
)
def test_received_rejects_bad_signatures_with_401(
    client: Client, archive: Callable[..., Receipt], headers: dict[str, object], reason: str
) -> None:
    receipt = archive()
    body = json.dumps({"receipt_ids": [receipt.pk]}).encode()
    sent = {} if not headers else signed_headers(body, **headers)  # type: ignore[arg-type]
    response = post(client, body, sent)
    assert response.status_code == 401
    assert response.json() == {"error": reason}
    assert Receipt.objects.get(pk=receipt.pk).indexed_at is None
    assert Instance.objects.count() == 0


def test_received_rejects_a_body_signed_for_another_body(client: Client) -> None:
    headers = signed_headers(b'{"receipt_ids":[1]}')
    response = post(client, b'{"receipt_ids":[2]}', headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1,2]", b'{"ids":[1]}', b'{"receipt_ids":"1"}', b'{"receipt_ids":[1,"2"]}',
     b'{"receipt_ids":[true]}', b'{"receipt_ids":[-1]}'],
)  # fmt: skip
def test_received_rejects_bad_bodies_with_400(client: Client, body: bytes) -> None:
    response = post(client, body, signed_headers(body))
    assert response.status_code == 400
    assert response.json()["error"]


def test_received_only_accepts_post(client: Client) -> None:
    assert client.get(URL).status_code == 405
