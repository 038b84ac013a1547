"""DICOMweb (PS3.18) under /api/v1/dicomweb: QIDO-RS searches.

Thin adapters over fastapi_app.dicomweb (qido: matching and DICOM JSON; media: Accept). Every route needs the
same login as the rest of /api/v1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request, Response

from fastapi_app import schemas, sql
from fastapi_app.deps import CurrentUser, PoolDep
from fastapi_app.dicomweb import media, qido
from fastapi_app.errors import InvalidRequestError
from noctis_pro.contracts.uids import uid_problem

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
_JSON_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {media.DICOM_JSON: {}}}}


def _uid(name: str, value: str) -> str:
    problem = uid_problem(value)
    if problem is not None:
        raise InvalidRequestError(f"{name} {value[:80]!r} is {problem}")
    return value


def _base(request: Request) -> str:
    """The absolute DICOMweb root as the client reached it, for RetrieveURL and BulkDataURI."""
    url = str(request.url.replace(query=""))
    return url[: url.index(PREFIX + "/") + len(PREFIX)]


# --- QIDO-RS -----------------------------------------------------------------------------------------------------


def _retrieve_url(base: str, level: str, row: dict[str, Any]) -> str:
    url = f"{base}/studies/{row['study_instance_uid']}"
    if level in {"series", "instance"}:
        url += f"/series/{row['series_instance_uid']}"
    if level == "instance":
        url += f"/instances/{row['sop_instance_uid']}"
    return url


async def _search(
    request: Request, pool: sql.asyncpg.Pool, *, levels: Sequence[str], fixed: dict[str, list[str]] | None = None
) -> Response:
    media.json_accepted(request.headers.get("accept"))
    parsed = qido.qido_request_parse(request.query_params.multi_items(), levels=levels, fixed=fixed)
    level = levels[-1]
    # One row more than the page shows whether there are more.
    rows = await sql.qido_search(
        pool, level=level, filters=parsed.filters, limit=parsed.limit + 1, offset=parsed.offset
    )
    headers = {}
    if len(rows) > parsed.limit:  # PS3.18 8.3.4.2: say that the page is not the whole answer
        rows = rows[: parsed.limit]
        headers["Warning"] = '299 noctis "There are more results: ask again with a larger offset"'
    base = _base(request)
    body = [
        qido.row_json(row, levels=levels, request=parsed, retrieve_url=_retrieve_url(base, level, row)) for row in rows
    ]
    return Response(json.dumps(body, separators=(",", ":")), media_type=media.DICOM_JSON, headers=headers)


@router.get("/studies", responses=_JSON_RESPONSE, summary="QIDO-RS: search for studies")
async def studies_search(request: Request, pool: PoolDep, user: CurrentUser) -> Response:
    return await _search(request, pool, levels=("study",))


@router.get("/series", responses=_JSON_RESPONSE, summary="QIDO-RS: search for series (study keys allowed)")
async def series_search(request: Request, pool: PoolDep, user: CurrentUser) -> Response:
    return await _search(request, pool, levels=("study", "series"))


@router.get("/instances", responses=_JSON_RESPONSE, summary="QIDO-RS: search for instances (any level's keys)")
async def instances_search(request: Request, pool: PoolDep, user: CurrentUser) -> Response:
    return await _search(request, pool, levels=("study", "series", "instance"))


@router.get("/studies/{study}/series", responses=_JSON_RESPONSE, summary="QIDO-RS: the series of a study")
async def study_series_search(study: str, request: Request, pool: PoolDep, user: CurrentUser) -> Response:
    fixed = {"StudyInstanceUID": [_uid("StudyInstanceUID", study)]}
    return await _search(request, pool, levels=("series",), fixed=fixed)


@router.get("/studies/{study}/instances", responses=_JSON_RESPONSE, summary="QIDO-RS: the instances of a study")
async def study_instances_search(study: str, request: Request, pool: PoolDep, user: CurrentUser) -> Response:
    fixed = {"StudyInstanceUID": [_uid("StudyInstanceUID", study)]}
    return await _search(request, pool, levels=("series", "instance"), fixed=fixed)


@router.get(
    "/studies/{study}/series/{series}/instances",
    responses=_JSON_RESPONSE,
    summary="QIDO-RS: the instances of a series",
)
async def series_instances_search(
    study: str, series: str, request: Request, pool: PoolDep, user: CurrentUser
) -> Response:
    fixed = {
        "StudyInstanceUID": [_uid("StudyInstanceUID", study)],
        "SeriesInstanceUID": [_uid("SeriesInstanceUID", series)],
    }
    return await _search(request, pool, levels=("instance",), fixed=fixed)
