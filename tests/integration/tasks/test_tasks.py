"""pacs.tasks: the reconciler, series thumbnails (real PNGs from real files), and `ping` through a real worker."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from django.conf import settings
from django.utils import timezone
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from noctis_pro.contracts.events import CHANNEL
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Instance, Receipt, Series
from noctis_pro.pacs.tasks import ping, reconcile_receipts, series_thumbnail
from tests.conftest import make_dataset, test_database_url
from tests.integration.django.receipts import receipt_insert

ROOT = Path(__file__).resolve().parents[3]


def _age(receipt: Receipt, seconds: int) -> None:
    Receipt.objects.filter(pk=receipt.pk).update(received_at=timezone.now() - dt.timedelta(seconds=seconds))


@pytest.mark.django_db
def test_reconcile_receipts_indexes_old_unindexed_receipts(archive: Callable[..., Receipt], settings: object) -> None:
    settings.RECONCILE_AFTER_SECONDS = 30  # type: ignore[attr-defined]
    old = [archive(instance_number=n) for n in (1, 2)]
    for receipt in old:
        _age(receipt, 120)
    fresh = archive()  # the webhook's turn first
    exhausted = archive()
    _age(exhausted, 120)
    Receipt.objects.filter(pk=exhausted.pk).update(index_attempts=settings.MAX_INDEX_ATTEMPTS)  # type: ignore[attr-defined]

    totals = reconcile_receipts()

    assert totals == {"indexed": 2, "failed": 0}
    assert all(r.indexed_at for r in Receipt.objects.filter(pk__in=[r.pk for r in old]))
    assert Receipt.objects.get(pk=fresh.pk).indexed_at is None
    assert Receipt.objects.get(pk=exhausted.pk).indexed_at is None
    assert Instance.objects.filter(sop_instance_uid__in=[r.sop_instance_uid for r in old]).count() == 2


@pytest.mark.django_db
def test_reconcile_receipts_counts_attempts_of_unusable_receipts(archive: Callable[..., Receipt]) -> None:
    broken = archive()
    (settings.STORAGE_ROOT / broken.path).unlink()
    _age(broken, 3600)
    assert reconcile_receipts() == {"indexed": 0, "failed": 1}
    assert reconcile_receipts() == {"indexed": 0, "failed": 1}
    receipt = Receipt.objects.get(pk=broken.pk)
    assert receipt.index_attempts == 2
    assert "missing" in receipt.index_error


def _png(relpath: str) -> np.ndarray:
    path = settings.MEDIA_ROOT / relpath
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


@pytest.mark.django_db
def test_series_thumbnail_writes_a_real_png_for_ct(archive: Callable[..., Receipt]) -> None:
    series_uid = generate_uid()
    receipts = [archive(series_uid=series_uid, instance_number=n, rows=300, columns=200) for n in (1, 2, 3)]
    receipts_index(receipt_ids=[r.pk for r in receipts])

    relpath = series_thumbnail(series_uid)

    assert relpath == f"thumbnails/{series_uid}.png"
    pixels = _png(relpath)
    assert pixels.shape == (256, 171)  # 300x200 fitted into 256 px, aspect kept
    assert pixels.std() > 10, "not a constant image"
    assert Series.objects.get(series_instance_uid=series_uid).thumbnail == relpath


def jpeg_baseline_dataset(**kwargs: object) -> object:
    """An 8-bit MONOCHROME2 JPEG Baseline instance (Pillow encodes the frame, pydicom encapsulates it)."""
    ds = make_dataset(rows=128, columns=128, transfer_syntax=JPEGBaseline8Bit, **kwargs)
    yy, xx = np.mgrid[0:128, 0:128]
    frame = ((xx + yy) % 256).astype(np.uint8)
    frame[40:80, 40:80] = 250
    out = io.BytesIO()
    Image.fromarray(frame, mode="L").save(out, format="JPEG", quality=95)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    for keyword in ("WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    ds.PixelData = encapsulate([out.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return ds


@pytest.mark.django_db
def test_series_thumbnail_decodes_jpeg_baseline(storage_root: Path) -> None:
    ds = jpeg_baseline_dataset()
    receipt = receipt_insert(ds=ds, storage_root=storage_root)
    assert receipt.transfer_syntax_uid == JPEGBaseline8Bit
    receipts_index(receipt_ids=[receipt.pk])

    relpath = series_thumbnail(receipt.series_instance_uid)

    pixels = _png(relpath)
    assert pixels.shape == (128, 128)
    assert pixels.std() > 10
    assert pixels[60, 60] > 200  # the bright square survived decoding and windowing


@pytest.mark.django_db
def test_series_thumbnail_of_undecodable_pixels_records_nothing(storage_root: Path) -> None:
    ds = jpeg_baseline_dataset()
    ds.PixelData = encapsulate([b"\xff\xd8 this is not a JPEG stream"])
    receipt = receipt_insert(ds=ds, storage_root=storage_root)
    receipts_index(receipt_ids=[receipt.pk])

    assert series_thumbnail(receipt.series_instance_uid) == ""
    assert Series.objects.get(series_instance_uid=receipt.series_instance_uid).thumbnail == ""
    assert not (settings.MEDIA_ROOT / "thumbnails" / f"{receipt.series_instance_uid}.png").exists()


@pytest.mark.django_db
def test_series_thumbnail_of_unknown_series_is_empty(storage_root: Path) -> None:
    assert series_thumbnail(generate_uid()) == ""
    assert series_thumbnail("../../etc/passwd") == ""


@pytest.fixture
def celery_worker_process(tmp_path: Path) -> Iterator[str]:
    """A real `celery -A noctis_pro worker` on a private queue, pointed at the test database and Redis."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "noctis_pro.settings.test",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "NOCTIS_ENV_FILE": str(tmp_path / "no.env"),
    }
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "noctis_pro", "worker", "--pool=solo", "-Q", queue,
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{queue}@%h", "--loglevel=INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield queue
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.django_db(transaction=True)
def test_ping_round_trips_through_a_real_worker_and_publishes_task_echo(celery_worker_process: str) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    token = uuid.uuid4().hex
    try:
        result = ping.apply_async(args=[token], queue=celery_worker_process)
        assert result.get(timeout=60) == token
        deadline = time.monotonic() + 10
        echoed = None
        while time.monotonic() < deadline and echoed is None:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message and message["type"] == "message":
                event = json.loads(message["data"])
                if event.get("type") == "task.echo" and event.get("token") == token:
                    echoed = event
        assert echoed == {"type": "task.echo", "token": token}
    finally:
        pubsub.close()
        client.close()


@pytest.mark.django_db
def test_series_thumbnail_renders_again_only_once_the_series_is_quiet(
    archive: Callable[..., Receipt], monkeypatch: pytest.MonkeyPatch
) -> None:
    """First render at once; while the series still receives instances the render is postponed, not repeated."""
    queued: list[tuple[object, ...]] = []
    monkeypatch.setattr(series_thumbnail, "apply_async", lambda args, **kw: queued.append(tuple(args)))
    series_uid = generate_uid()
    receipts_index(receipt_ids=[archive(series_uid=series_uid, instance_number=1, rows=64, columns=64).pk])
    relpath = series_thumbnail(series_uid)
    assert relpath == f"thumbnails/{series_uid}.png"
    (settings.MEDIA_ROOT / relpath).unlink()

    receipts_index(receipt_ids=[archive(series_uid=series_uid, instance_number=2, rows=64, columns=64).pk])
    assert series_thumbnail(series_uid) == relpath  # still arriving: postponed, not rendered
    assert not (settings.MEDIA_ROOT / relpath).exists()
    assert queued == [(series_uid,)]

    Series.objects.filter(series_instance_uid=series_uid).update(updated_at=timezone.now() - dt.timedelta(seconds=3))
    assert series_thumbnail(series_uid) == relpath  # quiet: rendered
    assert (settings.MEDIA_ROOT / relpath).exists()
    assert queued == [(series_uid,)]
