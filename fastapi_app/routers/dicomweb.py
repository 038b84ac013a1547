"""DICOMweb (PS3.18) under /api/v1/dicomweb: QIDO-RS searches and WADO-RS retrievals.

QIDO-RS (application/dicom+json; matching rules in dicomweb/qido.py):
  /studies  /series  /instances  /studies/{s}/series  /studies/{s}/instances  /studies/{s}/series/{se}/instances
WADO-RS:
  /studies/{s}[/series/{se}[/instances/{i}]]            multipart/related; type="application/dicom", bytes as stored
  .../metadata (study, series, instance)                DICOM JSON; values > 1 KB of OB/OW/UN... as BulkDataURI
  .../instances/{i}/bulkdata/{tag[/item/tag...]}         multipart/related; type="application/octet-stream"
  .../instances/{i}/frames/{1,2,...}                     uncompressed, or as stored when Accept names its type
  .../instances/{i}[/frames/{n}]/rendered|thumbnail      image/jpeg or image/png; series and study thumbnails
STOW-RS (dicomweb/stow.py: stored by our SCP over C-STORE, the one ingest path):
  POST /studies  POST /studies/{s}                       multipart/related; type="application/dicom" in, DICOM JSON out

Thin adapters over fastapi_app.dicomweb (qido, wado, rendered, media). Every route needs the same login as the
rest of /api/v1. Retrieving a whole study or series (files or metadata) writes an audit row; instance-level
requests do not (a viewer makes one per image), and carry the file's digest as ETag instead, so a client can
revalidate with If-None-Match.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from fastapi_app import schemas, sql
from fastapi_app.deps import CurrentUser, PoolDep, SettingsDep, user_audit
from fastapi_app.dicomweb import media, metadata_cache, qido, rendered, stow, wado
from fastapi_app.errors import InvalidRequestError
from fastapi_app.settings import Settings
from noctis_pro.contracts.uids import uid_problem

logger = logging.getLogger(__name__)
PREFIX = "/dicomweb"
router = APIRouter(
    prefix=PREFIX,
    tags=["dicomweb"],
    responses={
        400: {"model": schemas.ErrorOut},
        401: {"model": schemas.ErrorOut},
        406: {"model": schemas.ErrorOut},
    },
)
INSTANCE_CACHE_CONTROL = "private, no-cache"  # revalidate with the ETag: an overwrite (SCP_ON_CONFLICT) is possible
_JSON_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {media.DICOM_JSON: {}}}}
_MULTIPART_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"multipart/related": {}}},
    404: {"model": schemas.ErrorOut},
}


def _uid(name: str, value: str) -> str:
    problem = uid_problem(value)
    if problem is not None:
        raise InvalidRequestError(f"{name} {value[:80]!r} is {problem}")
    return value


def _base(request: Request, settings: Settings) -> str:
    """The absolute DICOMweb root for RetrieveURL and BulkDataURI: under NOCTIS_PUBLIC_BASE_URL when set (behind
    proxies that rewrite Host), else as the client reached it (nginx passes Host and X-Forwarded-Proto)."""
    url = str(request.url.replace(query=""))
    root = url[: url.index(PREFIX + "/") + len(PREFIX)]
    if settings.noctis_public_base_url:
        path = request.url.path
        return settings.noctis_public_base_url + path[: path.index(PREFIX + "/") + len(PREFIX)]
    return root


# --- QIDO-RS -----------------------------------------------------------------------------------------------------


def _retrieve_url(base: str, level: str, row: dict[str, Any]) -> str:
    url = f"{base}/studies/{row['study_instance_uid']}"
    if level in {"series", "instance"}:
        url += f"/series/{row['series_instance_uid']}"
    if level == "instance":
        url += f"/instances/{row['sop_instance_uid']}"
    return url


async def _search(
    request: Request,
    pool: asyncpg.Pool,
    user: CurrentUser,
    settings: Settings,
    *,
    levels: Sequence[str],
    fixed: dict[str, list[str]] | None = None,
) -> Response:
    media.json_accepted(request.headers.get("accept"))
    parsed = qido.qido_request_parse(request.query_params.multi_items(), levels=levels, fixed=fixed)
    level = levels[-1]
    # One row more than the page shows whether there are more.
    rows = await sql.qido_search(
        pool,
        level=level,
        filters=parsed.filters,
        limit=parsed.limit + 1,
        offset=parsed.offset,
        visible_facility_ids=user.visible_facility_ids,  # the facility rule, contracts.access
    )
    headers = {}
    if len(rows) > parsed.limit:  # PS3.18 8.3.4.2: say that the page is not the whole answer
        rows = rows[: parsed.limit]
        headers["Warning"] = '299 noctis "There are more results: ask again with a larger offset"'
    base = _base(request, settings)
    level_set = frozenset(levels)
    body = [
        qido.row_json(row, levels=level_set, request=parsed, retrieve_url=_retrieve_url(base, level, row))
        for row in rows
    ]
    return Response(orjson.dumps(body), media_type=media.DICOM_JSON, headers=headers)


@router.get("/studies", responses=_JSON_RESPONSE, summary="QIDO-RS: search for studies")
async def studies_search(request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep) -> Response:
    return await _search(request, pool, user, settings, levels=("study",))


@router.get("/series", responses=_JSON_RESPONSE, summary="QIDO-RS: search for series (study keys allowed)")
async def series_search(request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep) -> Response:
    return await _search(request, pool, user, settings, levels=("study", "series"))


@router.get("/instances", responses=_JSON_RESPONSE, summary="QIDO-RS: search for instances (any level's keys)")
async def instances_search(request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep) -> Response:
    return await _search(request, pool, user, settings, levels=("study", "series", "instance"))


@router.get("/studies/{study}/series", responses=_JSON_RESPONSE, summary="QIDO-RS: the series of a study")
async def study_series_search(
    study: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    fixed = {"StudyInstanceUID": [_uid("StudyInstanceUID", study)]}
    return await _search(request, pool, user, settings, levels=("series",), fixed=fixed)


@router.get("/studies/{study}/instances", responses=_JSON_RESPONSE, summary="QIDO-RS: the instances of a study")
async def study_instances_search(
    study: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    fixed = {"StudyInstanceUID": [_uid("StudyInstanceUID", study)]}
    return await _search(request, pool, user, settings, levels=("series", "instance"), fixed=fixed)


@router.get(
    "/studies/{study}/series/{series}/instances",
    responses=_JSON_RESPONSE,
    summary="QIDO-RS: the instances of a series",
)
async def series_instances_search(
    study: str, series: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    fixed = {
        "StudyInstanceUID": [_uid("StudyInstanceUID", study)],
        "SeriesInstanceUID": [_uid("SeriesInstanceUID", series)],
    }
    return await _search(request, pool, user, settings, levels=("instance",), fixed=fixed)


# --- WADO-RS -----------------------------------------------------------------------------------------------------


async def _stored(
    pool: asyncpg.Pool, study: str, series: str | None = None, instance: str | None = None
) -> list[sql.StoredInstance]:
    found = await sql.instances_for_retrieve(
        pool,
        study_uid=_uid("StudyInstanceUID", study),
        series_uid=None if series is None else _uid("SeriesInstanceUID", series),
        sop_uid=None if instance is None else _uid("SOPInstanceUID", instance),
    )
    if not found:
        what = "instance" if instance else "series" if series else "study"
        raise media.UnknownResourceError(f"no {what} {instance or series or study}")
    return found


def _etag(stored: sql.StoredInstance, variant: str) -> str:
    """The file's digest; a second representation of one URL (compressed frames) gets its own tag."""
    return f'"{stored.digest}{"." + variant if variant else ""}"'


def _not_modified(request: Request, stored: sql.StoredInstance, variant: str = "") -> Response | None:
    candidates = [c.strip() for c in request.headers.get("if-none-match", "").split(",")]
    if _etag(stored, variant) in candidates or "*" in candidates:
        return Response(status_code=304, headers=_instance_headers(stored, variant))
    return None


def _instance_headers(stored: sql.StoredInstance, variant: str = "") -> dict[str, str]:
    return {"ETag": _etag(stored, variant), "Cache-Control": INSTANCE_CACHE_CONTROL}


async def _files_response(
    request: Request, settings: Settings, stored: list[sql.StoredInstance], headers: dict[str, str] | None = None
) -> Response:
    media.multipart_accepted(
        request.headers.get("accept"), part_type=media.DICOM, transfer_syntaxes=(s.transfer_syntax_uid for s in stored)
    )
    parts = await run_in_threadpool(wado.file_parts, settings.storage_root, stored, base=_base(request, settings))
    boundary = media.boundary_new()
    length = media.multipart_files_length(parts, boundary)
    return StreamingResponse(
        media.multipart_files(parts, boundary),
        media_type=media.multipart_content_type(media.DICOM, boundary),
        headers={"Content-Length": str(length), **(headers or {})},
    )


def _metadata_response(
    request: Request, settings: Settings, stored: list[sql.StoredInstance], headers: dict[str, str] | None = None
) -> Response:
    media.json_accepted(request.headers.get("accept"))
    body = wado.metadata_stream(settings.storage_root, stored, base=_base(request, settings))
    return StreamingResponse(body, media_type=media.DICOM_JSON, headers=headers)


async def _metadata_cached_response(
    request: Request, pool: asyncpg.Pool, settings: Settings, study: str, series: str | None = None
) -> Response:
    """Study or series metadata, one cache read per series (dicomweb/metadata_cache.py), else from the files."""
    media.json_accepted(request.headers.get("accept"))
    study = _uid("StudyInstanceUID", study)
    series = None if series is None else _uid("SeriesInstanceUID", series)
    plan = await sql.metadata_plan(pool, study_uid=study, series_uid=series)
    if not plan:
        raise media.UnknownResourceError(f"no {'series' if series else 'study'} {series or study}")
    files = await metadata_cache.series_files(pool, settings.storage_root, study_uid=study, plan=plan)
    body = metadata_cache.metadata_body(
        pool, settings.storage_root, study_uid=study, plan=plan, files=files, base=_base(request, settings)
    )
    headers = {"Vary": "Accept-Encoding"}
    if metadata_cache.gzip_accepted(request.headers.get("accept-encoding")):
        body, headers["Content-Encoding"] = metadata_cache.gzip_stream(body), "gzip"
    return StreamingResponse(body, media_type=media.DICOM_JSON, headers=headers)


@router.get("/studies/{study}", responses=_MULTIPART_RESPONSE, summary="WADO-RS: a study's files, as stored")
async def study_retrieve(
    study: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    stored = await _stored(pool, study)
    response = await _files_response(request, settings, stored)
    await user_audit(pool, request, user, action="study.retrieve", object_type="study", object_id=study)
    return response


@router.get(
    "/studies/{study}/series/{series}", responses=_MULTIPART_RESPONSE, summary="WADO-RS: a series' files, as stored"
)
async def series_retrieve(
    study: str, series: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    stored = await _stored(pool, study, series)
    response = await _files_response(request, settings, stored)
    await user_audit(
        pool,
        request,
        user,
        action="series.retrieve",
        object_type="series",
        object_id=series,
        detail={"study_instance_uid": study},
    )
    return response


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}",
    responses=_MULTIPART_RESPONSE,
    summary="WADO-RS: one instance's file, as stored",
)
async def instance_retrieve(
    study: str, series: str, instance: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    stored = await _stored(pool, study, series, instance)
    media.multipart_accepted(
        request.headers.get("accept"), part_type=media.DICOM, transfer_syntaxes=[stored[0].transfer_syntax_uid]
    )
    return _not_modified(request, stored[0]) or await _files_response(
        request, settings, stored, _instance_headers(stored[0])
    )


@router.get("/studies/{study}/metadata", responses=_JSON_RESPONSE, summary="WADO-RS: a study's metadata")
async def study_metadata(
    study: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    response = await _metadata_cached_response(request, pool, settings, study)
    await user_audit(pool, request, user, action="study.metadata", object_type="study", object_id=study)
    return response


@router.get(
    "/studies/{study}/series/{series}/metadata", responses=_JSON_RESPONSE, summary="WADO-RS: a series' metadata"
)
async def series_metadata(
    study: str, series: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    response = await _metadata_cached_response(request, pool, settings, study, series)
    await user_audit(
        pool,
        request,
        user,
        action="series.metadata",
        object_type="series",
        object_id=series,
        detail={"study_instance_uid": study},
    )
    return response


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/metadata",
    responses=_JSON_RESPONSE,
    summary="WADO-RS: one instance's metadata",
)
async def instance_metadata(
    study: str, series: str, instance: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    stored = await _stored(pool, study, series, instance)
    media.json_accepted(request.headers.get("accept"))
    return _not_modified(request, stored[0]) or _metadata_response(
        request, settings, stored, _instance_headers(stored[0])
    )


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    responses=_MULTIPART_RESPONSE,
    summary="WADO-RS: frames (1-based list: 1,3,5), uncompressed or as stored when Accept names its media type",
)
async def instance_frames(
    study: str,
    series: str,
    instance: str,
    frames: str,
    request: Request,
    pool: PoolDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> Response:
    stored = (await _stored(pool, study, series, instance))[0]
    count = stored.number_of_frames or 1
    numbers = wado.frame_numbers_parse(frames, number_of_frames=count)
    chosen = media.frames_representation(request.headers.get("accept"), stored_syntax=stored.transfer_syntax_uid)
    variant = chosen.transfer_syntax if chosen.compressed else ""
    if (not_modified := _not_modified(request, stored, variant)) is not None:
        return not_modified
    path = wado.stored_path(settings.storage_root, stored)
    read = wado.frames_as_stored if chosen.compressed else wado.frames_decode
    pixels = await run_in_threadpool(read, path, numbers, number_of_frames=count)
    boundary = media.boundary_new()
    part_type = f"{chosen.part_type}; transfer-syntax={chosen.transfer_syntax}"
    body = media.multipart_bytes([(part_type, frame) for frame in pixels], boundary)
    content_type = media.multipart_content_type(chosen.part_type, boundary, chosen.transfer_syntax)
    headers = {**_instance_headers(stored, variant), "Vary": "Accept"}
    return Response(body, media_type=content_type, headers=headers)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag_path:path}",
    responses=_MULTIPART_RESPONSE,
    summary="WADO-RS: a bulk value named by a metadata BulkDataURI (pixel data uncompressed; one byte Range)",
)
async def instance_bulkdata(
    study: str,
    series: str,
    instance: str,
    tag_path: str,
    request: Request,
    pool: PoolDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> Response:
    stored = (await _stored(pool, study, series, instance))[0]
    steps = wado.tag_path_parse(tag_path)
    media.multipart_accepted(
        request.headers.get("accept"), part_type=media.OCTET_STREAM, transfer_syntaxes=[media.EXPLICIT_VR_LITTLE_ENDIAN]
    )
    if (not_modified := _not_modified(request, stored)) is not None:
        return not_modified
    path = wado.stored_path(settings.storage_root, stored)
    value = await run_in_threadpool(wado.bulkdata_read, path, steps, number_of_frames=stored.number_of_frames or 1)
    headers = {**_instance_headers(stored), "Accept-Ranges": "bytes"}
    wanted = media.byte_range_parse(request.headers.get("range"), size=len(value))
    content_range = None
    if wanted is not None:
        first, last = wanted
        content_range = f"bytes {first}-{last}/{len(value)}"
        headers["Content-Range"] = content_range
        value = value[first : last + 1]
    boundary = media.boundary_new()
    body = media.multipart_bytes([(media.OCTET_STREAM, value)], boundary, content_range=content_range)
    content_type = media.multipart_content_type(media.OCTET_STREAM, boundary)
    return Response(body, status_code=200 if wanted is None else 206, media_type=content_type, headers=headers)


# --- WADO-RS rendered and thumbnails -------------------------------------------------------------------------------


async def _render(
    request: Request, settings: Settings, stored: sql.StoredInstance, *, frames: str | None, thumbnail: bool
) -> Response:
    count = stored.number_of_frames or 1
    numbers = wado.frame_numbers_parse(frames, number_of_frames=count) if frames is not None else [1]
    if len(numbers) != 1:
        raise InvalidRequestError(f"frame list {frames!r}: a rendered frame is one frame number")
    params = request.query_params
    render_request = rendered.render_request_parse(
        accept=request.headers.get("accept"),
        window=params.get("window"),
        viewport=params.get("viewport"),
        quality=params.get("quality"),
        thumbnail=thumbnail,
    )
    path = wado.stored_path(settings.storage_root, stored)
    image = await run_in_threadpool(
        rendered.frame_render, path, frame=numbers[0], number_of_frames=count, request=render_request
    )
    return Response(image, media_type=render_request.media_type, headers={"Vary": "Accept"})


def _representative(stored: list[sql.StoredInstance]) -> sql.StoredInstance:
    """The middle image of the first series that has images: what a thumbnail of a series or study shows."""
    images = [s for s in stored if s.rows]
    if not images:
        raise media.UnknownResourceError("no image to show: the instances have no pixel data")
    first_series = [s for s in images if s.series_instance_uid == images[0].series_instance_uid]
    return first_series[len(first_series) // 2]


_IMAGE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {rendered.JPEG: {}, rendered.PNG: {}}},
    404: {"model": schemas.ErrorOut},
}
_RENDER_DOC = (
    "Query: window=center,width[,linear|linear-exact|sigmoid], viewport=vw,vh[,sx,sy,sw,sh], quality=1..100;"
    " Accept image/jpeg (default) or image/png."
)
_INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"


@router.get(
    f"{_INSTANCE}/rendered",
    responses=_IMAGE_RESPONSE,
    description=_RENDER_DOC,
    summary="WADO-RS: an instance rendered (frame 1)",
)
async def instance_rendered(
    study: str, series: str, instance: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    stored = (await _stored(pool, study, series, instance))[0]
    return await _render(request, settings, stored, frames=None, thumbnail=False)


@router.get(
    f"{_INSTANCE}/frames/{{frames}}/rendered",
    responses=_IMAGE_RESPONSE,
    description=_RENDER_DOC,
    summary="WADO-RS: a frame rendered",
)
async def frame_rendered(
    study: str,
    series: str,
    instance: str,
    frames: str,
    request: Request,
    pool: PoolDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> Response:
    stored = (await _stored(pool, study, series, instance))[0]
    return await _render(request, settings, stored, frames=frames, thumbnail=False)


@router.get(
    f"{_INSTANCE}/thumbnail",
    responses=_IMAGE_RESPONSE,
    description=_RENDER_DOC,
    summary="WADO-RS: an instance's thumbnail",
)
async def instance_thumbnail(
    study: str, series: str, instance: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    stored = (await _stored(pool, study, series, instance))[0]
    return await _render(request, settings, stored, frames=None, thumbnail=True)


@router.get(
    f"{_INSTANCE}/frames/{{frames}}/thumbnail",
    responses=_IMAGE_RESPONSE,
    description=_RENDER_DOC,
    summary="WADO-RS: a frame's thumbnail",
)
async def frame_thumbnail(
    study: str,
    series: str,
    instance: str,
    frames: str,
    request: Request,
    pool: PoolDep,
    user: CurrentUser,
    settings: SettingsDep,
) -> Response:
    stored = (await _stored(pool, study, series, instance))[0]
    return await _render(request, settings, stored, frames=frames, thumbnail=True)


@router.get(
    "/studies/{study}/series/{series}/thumbnail",
    responses=_IMAGE_RESPONSE,
    description=_RENDER_DOC,
    summary="WADO-RS: a series' thumbnail",
)
async def series_thumbnail(
    study: str, series: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    stored = _representative(await _stored(pool, study, series))
    return await _render(request, settings, stored, frames=None, thumbnail=True)


@router.get(
    "/studies/{study}/thumbnail",
    responses=_IMAGE_RESPONSE,
    description=_RENDER_DOC,
    summary="WADO-RS: a study's thumbnail",
)
async def study_thumbnail(
    study: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    stored = _representative(await _stored(pool, study))
    return await _render(request, settings, stored, frames=None, thumbnail=True)


# --- STOW-RS -------------------------------------------------------------------------------------------------------

_STOW_BODY = {
    "required": True,
    "content": {
        'multipart/related; type="application/dicom"': {"schema": {"type": "string", "format": "binary"}},
        media.DICOM: {"schema": {"type": "string", "format": "binary"}},
    },
}
_STOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "every instance stored", "content": {media.DICOM_JSON: {}}},
    202: {"description": "some instances stored, others failed (FailedSOPSequence)", "content": {media.DICOM_JSON: {}}},
    409: {"description": "no instance stored (FailedSOPSequence)", "content": {media.DICOM_JSON: {}}},
    415: {"model": schemas.ErrorOut},
    503: {"model": schemas.ErrorOut},
}
_STOW_DOC = (
    'Body: multipart/related; type="application/dicom" (one Part-10 instance per part), or one application/dicom'
    " instance. Each instance is stored by the archive's SCP exactly as a C-STORE from a modality (same checks,"
    " storage, receipt and indexing), in its own transfer syntax; 200 means every instance is durable. The answer"
    " is the Store Instances Response Module: ReferencedSOPSequence, FailedSOPSequence with FailureReason (the"
    " C-STORE status: A7xx out of resources, A900 data set mismatch or another study than the URL's, Cxxx cannot"
    " understand, 0122 SOP class / C122 transfer syntax not supported, 0110 processing failure)."
)


async def _store(
    request: Request, pool: asyncpg.Pool, user: CurrentUser, settings: Settings, study: str | None
) -> Response:
    media.json_accepted(request.headers.get("accept"))
    scp = stow.ScpAddress(
        host=settings.dicom_scp_host,
        port=settings.dicom_port,
        called_ae=settings.dicom_ae_title,
        calling_ae=settings.dicom_stow_ae_title,
    )
    outcomes = await stow.upload_store(
        request.stream(),
        content_type=request.headers.get("content-type"),
        study=study,
        scp=scp,
        directory=settings.stow_temp_dir,
    )
    status, body = stow.store_response(outcomes, base=_base(request, settings), study=study)
    for uid, count in sorted(Counter(o.study_instance_uid for o in outcomes if o.stored).items()):
        await user_audit(
            pool, request, user, action="study.store", object_type="study", object_id=uid, detail={"instances": count}
        )
    failed = [o for o in outcomes if not o.stored]
    if failed:
        logger.warning(
            "STOW-RS by %s: %d of %d instances failed: %s",
            user.username,
            len(failed),
            len(outcomes),
            "; ".join(f"{o.sop_instance_uid or '?'} 0x{o.status or 0:04X} {o.reason}" for o in failed[:20]),
        )
        await user_audit(
            pool,
            request,
            user,
            action="study.store_failed",
            object_type="study",
            object_id=study or "",
            detail={"failed": len(failed), "reasons": sorted({f"{o.status or 0:04X}" for o in failed})},
        )
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type=media.DICOM_JSON)


@router.post(
    "/studies",
    responses=_STOW_RESPONSES,
    description=_STOW_DOC,
    openapi_extra={"requestBody": _STOW_BODY},
    summary="STOW-RS: store instances (of any studies)",
)
async def studies_store(request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep) -> Response:
    return await _store(request, pool, user, settings, study=None)


@router.post(
    "/studies/{study}",
    responses=_STOW_RESPONSES,
    description=_STOW_DOC,
    openapi_extra={"requestBody": _STOW_BODY},
    summary="STOW-RS: store instances of one study (others fail with A900)",
)
async def study_store(
    study: str, request: Request, pool: PoolDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    return await _store(request, pool, user, settings, study=_uid("StudyInstanceUID", study))
