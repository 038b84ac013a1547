"""GET /api/v1/me: who the credentials belong to (the same identity Django knows)."""

from __future__ import annotations

from fastapi import APIRouter

from fastapi_app import schemas
from fastapi_app.deps import CurrentUser

router = APIRouter(tags=["auth"], responses={401: {"model": schemas.ErrorOut}})


@router.get("/me", response_model=schemas.UserOut)
async def me(user: CurrentUser) -> schemas.UserOut:
    return schemas.UserOut.model_validate(user)
