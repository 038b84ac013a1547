"""AI analyses of a study: list them with their results, or ask for one.

GET  /studies/{study_uid}/analyses   newest first: analyzer, status, attempts, timings, error, result JSON
POST /studies/{study_uid}/analyses   {"analyzer": name, "series_uid": optional} -> 202 with the pending rows

A series-scoped analyzer (contracts.analyses) asked for a whole study is queued once per image series. An analysis
that already waits is not queued twice. `process_ai_analyses` runs them; `analysis.completed` on /ws says when.
Both routes need the study.view permission and the study in the user's facilities (one outside is 404, as on the
study routes); asking also needs analysis.request (radiologists, admins); both write an audit row.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from fastapi_app import schemas, sql
from fastapi_app.deps import (
    CurrentUser,
    PoolDep,
    SettingsDep,
    permission_required,
    study_view_access,
    user_audit,
)
from fastapi_app.errors import InvalidRequestError, UnknownSeriesError, UnknownStudyError
from noctis_pro.contracts import analyses as contract
from noctis_pro.contracts import analysis_summaries as summaries
from noctis_pro.contracts import roles
from noctis_pro.contracts.uids import uid_problem

router = APIRouter(
    tags=["analyses"],
    dependencies=[Depends(study_view_access)],  # study.view and the facility rule
    responses={
        400: {"model": schemas.ErrorOut},
        401: {"model": schemas.ErrorOut},
        403: {"model": schemas.ErrorOut},
        404: {"model": schemas.ErrorOut},
    },
)


class AnalysisOut(BaseModel):
    id: int
    analyzer: str
    status: str = Field(description="pending, running, done or failed")
    series_uid: str | None = Field(None, description="the series analysed; null for a study-wide analysis")
    attempts: int
    max_attempts: int
    requested_by: str
    result: dict[str, Any] | None
    error: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_ms: int | None
    label: str = Field(description="the analyzer's short name, e.g. completeness")
    summary: str = Field(description="what it found, in a few words (the worklist's AI badge says the same)")


class AnalysisRequest(BaseModel):
    analyzer: str = Field(description="an analyzer name, e.g. series_completeness, image_quality, radiation_dose")
    series_uid: str | None = Field(None, description="only this series (series-scoped analyzers)")


class AnalysesQueued(BaseModel):
    queued: int = Field(description="new pending analyses (0 when the same ones were already waiting)")
    analyses: list[AnalysisOut]


def _analysis(record: Any) -> AnalysisOut:
    row = dict(record)
    row["series_uid"] = row.pop("series_instance_uid")
    if isinstance(row["result"], str):  # asyncpg returns jsonb as text
        row["result"] = json.loads(row["result"])
    row["label"] = summaries.analysis_label(row["analyzer"])
    row["summary"] = summaries.analysis_text(
        analyzer=row["analyzer"], status=row["status"], result=row["result"], error=row["error"]
    )
    return AnalysisOut.model_validate(row)


def _uid_checked(name: str, value: str) -> str:
    problem = uid_problem(value)
    if problem is not None:
        raise InvalidRequestError(f"{name} {value[:80]!r} is {problem}")
    return value


@router.get("/studies/{study_uid}/analyses", response_model=list[AnalysisOut])
async def analyses_list(study_uid: str, pool: PoolDep, user: CurrentUser, request: Request) -> list[AnalysisOut]:
    _uid_checked("StudyInstanceUID", study_uid)
    if await sql.analysis_study_id(pool, study_uid=study_uid) is None:
        raise UnknownStudyError(f"no study {study_uid}")
    rows = await sql.analyses_of_study(pool, study_uid=study_uid)
    await user_audit(pool, request, user, action="study.analyses.view", object_type="study", object_id=study_uid)
    return [_analysis(r) for r in rows]


@router.post(
    "/studies/{study_uid}/analyses",
    response_model=AnalysesQueued,
    status_code=202,
    dependencies=[permission_required(roles.ANALYSIS_REQUEST)],  # as the study page's Analyse button
)
async def analyses_request(
    study_uid: str, body: AnalysisRequest, pool: PoolDep, user: CurrentUser, request: Request, settings: SettingsDep
) -> AnalysesQueued:
    _uid_checked("StudyInstanceUID", study_uid)
    if body.series_uid is not None:
        _uid_checked("SeriesInstanceUID", body.series_uid)
    scopes = contract.analyzer_scopes(onnx_config_paths=settings.ai_onnx_models)
    scope = scopes.get(body.analyzer)
    if scope is None:
        raise InvalidRequestError(f"unknown analyzer {body.analyzer[:64]!r} (known: {', '.join(sorted(scopes))})")
    if scope == contract.STUDY and body.series_uid is not None:
        raise InvalidRequestError(f"{body.analyzer} analyses a whole study: leave series_uid out")
    study_id = await sql.analysis_study_id(pool, study_uid=study_uid)
    if study_id is None:
        raise UnknownStudyError(f"no study {study_uid}")
    queued, rows = await sql.analyses_request(
        pool,
        study_id=study_id,
        analyzer=body.analyzer,
        per_series=scope == contract.SERIES,
        series_uid=body.series_uid,
        requested_by=f"api:{user.username}",
        non_image_modalities=list(contract.NON_IMAGE_MODALITIES),
    )
    if body.series_uid is not None and not rows:
        raise UnknownSeriesError(f"no image series {body.series_uid} in study {study_uid}")
    await user_audit(
        pool,
        request,
        user,
        action="study.analysis.request",
        object_type="study",
        object_id=study_uid,
        detail={"analyzer": body.analyzer, "series_uid": body.series_uid, "queued": queued},
    )
    return AnalysesQueued(queued=queued, analyses=[_analysis(r) for r in rows])
