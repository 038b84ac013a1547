"""JSON REST for the app: the study list (worklist search), a study with its series, a series' instances.

Viewing a study or a series writes an audit row (who, what, from where). Roles and facilities are checked by
deps.study_access, mounted on this router in main.py; the list applies the facility rule in its SQL.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from fastapi_app import schemas, sql
from fastapi_app.deps import CurrentUser, PoolDep, user_audit
from fastapi_app.errors import InvalidRequestError, UnknownSeriesError, UnknownStudyError
from fastapi_app.study_search import DEFAULT_LIMIT, MAX_LIMIT, study_query_build, total_without_count
from noctis_pro.contracts.uids import uid_problem

router = APIRouter(tags=["studies"], responses={401: {"model": schemas.ErrorOut}, 400: {"model": schemas.ErrorOut}})


def _uid_checked(name: str, value: str) -> str:
    problem = uid_problem(value)
    if problem is not None:
        raise InvalidRequestError(f"{name} {value[:80]!r} is {problem}")
    return value


@router.get("/studies", response_model=schemas.StudyPage)
async def studies_list(
    pool: PoolDep,
    user: CurrentUser,
    patient_name: Annotated[str | None, Query(description="DICOM match: * and ? wildcards, case-insensitive")] = None,
    patient_id: str | None = None,
    accession_number: str | None = None,
    modality: Annotated[str | None, Query(description="a modality in the study, e.g. CT")] = None,
    study_date_from: Annotated[str | None, Query(description="YYYY-MM-DD or YYYYMMDD")] = None,
    study_date_to: Annotated[str | None, Query(description="YYYY-MM-DD or YYYYMMDD")] = None,
    sort: Annotated[
        str | None, Query(description="study_date, patient_name, received_at, accession_number; '-' descends")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.StudyPage:
    q = study_query_build(
        patient_name=patient_name,
        patient_id=patient_id,
        accession_number=accession_number,
        modality=modality,
        study_date_from=study_date_from,
        study_date_to=study_date_to,
        sort=sort,
        limit=limit,
        offset=offset,
        visible_facility_ids=user.visible_facility_ids,
    )
    rows = await sql.studies_search(pool, q)
    total = total_without_count(limit=limit, offset=offset, returned=len(rows))
    if total is None:
        total = await sql.studies_count(pool, q)
    items = [schemas.StudyOut.model_validate(r) for r in rows]
    return schemas.StudyPage(total=total, limit=limit, offset=offset, items=items)


@router.get("/studies/{study_uid}", response_model=schemas.StudyDetail, responses={404: {"model": schemas.ErrorOut}})
async def study_detail(study_uid: str, pool: PoolDep, user: CurrentUser, request: Request) -> schemas.StudyDetail:
    found = await sql.study_with_series(pool, study_uid=_uid_checked("StudyInstanceUID", study_uid))
    if found is None:
        raise UnknownStudyError(f"no study {study_uid}")
    study, series = found
    await user_audit(pool, request, user, action="study.view", object_type="study", object_id=study_uid)
    return schemas.StudyDetail(
        **schemas.StudyOut.model_validate(study).model_dump(),
        series=[schemas.SeriesOut.model_validate(s) for s in series],
    )


@router.get(
    "/series/{series_uid}/instances",
    response_model=schemas.SeriesInstancesOut,
    responses={404: {"model": schemas.ErrorOut}},
)
async def series_instances(
    series_uid: str, pool: PoolDep, user: CurrentUser, request: Request
) -> schemas.SeriesInstancesOut:
    found = await sql.series_instances(pool, series_uid=_uid_checked("SeriesInstanceUID", series_uid))
    if found is None:
        raise UnknownSeriesError(f"no series {series_uid}")
    await user_audit(
        pool,
        request,
        user,
        action="series.view",
        object_type="series",
        object_id=series_uid,
        detail={"study_instance_uid": found.study_instance_uid},
    )
    return schemas.SeriesInstancesOut.model_validate(found)
