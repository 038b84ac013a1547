"""Study and series metadata (WADO-RS) from the per-series cache that Django builds after indexing
(noctis_pro/pacs/metadata.py, table pacs_seriesmetadata): one read and one gunzip per series, whatever its size.

A series whose cache row is missing or stale (it changed since the build) is read from its files, as for an
instance; both give the same JSON because both use noctis_pro.contracts.dicom_json. The cache holds relative
BulkDataURIs; the request's DICOMweb root is put in front here. A client that accepts gzip gets the answer
gzip-encoded (level 1: a few MB of DICOM JSON shrink about tenfold for little CPU).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
from starlette.concurrency import run_in_threadpool

from fastapi_app import sql
from fastapi_app.dicomweb import wado
from noctis_pro.contracts.dicom_json import bulk_data_uris_absolute, instance_json_bytes

SeriesFiles = dict[str, list[tuple[sql.StoredInstance, Path]]]
GZIP_LEVEL = 1
_THREAD_THRESHOLD = 64 * 1024  # compress larger pieces in a worker thread


def gzip_accepted(header: str | None) -> bool:
    """Whether Accept-Encoding allows gzip (RFC 9110 12.5.3: q=0 refuses; "*" covers it)."""
    weights: dict[str, float] = {}
    for item in (header or "").split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        if coding.strip():
            weights[coding.strip().lower()] = q
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


async def gzip_stream(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    async for chunk in body:
        if len(chunk) > _THREAD_THRESHOLD:
            out = await run_in_threadpool(compressor.compress, chunk)
        else:
            out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def cached_items(data: bytes, *, base: str) -> bytes:
    """A cache row's instances as the inside of a JSON array, BulkDataURIs absolute under `base`."""
    return bulk_data_uris_absolute(gzip.decompress(data), base=base)


async def series_files(
    pool: asyncpg.Pool, storage_root: Path, *, study_uid: str, plan: Sequence[sql.MetadataSeries]
) -> SeriesFiles:
    """The checked files of the series the cache cannot answer for (a missing file is 500 before the answer)."""
    stale = {p.series_instance_uid for p in plan if not p.cached}
    if not stale:
        return {}
    series_uid = plan[0].series_instance_uid if len(plan) == 1 else None
    stored = await sql.instances_for_retrieve(pool, study_uid=study_uid, series_uid=series_uid)
    wanted = [s for s in stored if s.series_instance_uid in stale]
    paths = await run_in_threadpool(wado.metadata_paths, storage_root, wanted)
    files: SeriesFiles = {uid: [] for uid in stale}
    for instance, path in paths:
        files[instance.series_instance_uid].append((instance, path))
    return files


async def metadata_body(
    pool: asyncpg.Pool,
    storage_root: Path,
    *,
    study_uid: str,
    plan: Sequence[sql.MetadataSeries],
    files: SeriesFiles,
    base: str,
) -> AsyncIterator[bytes]:
    """The JSON array, series by series in retrieve order: from the cache, or file by file."""
    yield b"["
    first = True
    for series in plan:
        data = await sql.metadata_cached(pool, series_id=series.series_id) if series.cached else None
        if data is not None:
            items = await run_in_threadpool(cached_items, data, base=base)
            if items:
                yield (b"" if first else b",") + items
                first = False
            continue
        paths = files.get(series.series_instance_uid)
        if paths is None:  # rebuilt or changed since the plan was read: read its files now
            paths = (await series_files(pool, storage_root, study_uid=study_uid, plan=[_stale(series)]))[
                series.series_instance_uid
            ]
        for instance, path in paths:
            item = await run_in_threadpool(
                instance_json_bytes,
                path,
                base=base,
                study_uid=instance.study_instance_uid,
                series_uid=instance.series_instance_uid,
                sop_uid=instance.sop_instance_uid,
            )
            yield (b"" if first else b",") + item
            first = False
    yield b"]"


def _stale(series: sql.MetadataSeries) -> sql.MetadataSeries:
    return sql.MetadataSeries(series_id=series.series_id, series_instance_uid=series.series_instance_uid, cached=False)
