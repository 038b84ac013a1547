"""GET /api/v1/docs: the API reference (ReDoc), served with its script from our own package, not a CDN:
hospital networks often have no internet."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

_STATIC = files("fastapi_offline").joinpath("static")


def _asset(name: str, media_type: str) -> Response:
    content = _STATIC.joinpath(name).read_bytes()
    return Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


def docs_router(*, prefix: str, openapi_url: str, title: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(f"{prefix}/docs")
    async def docs() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{prefix}/docs/redoc.standalone.js",
            redoc_favicon_url=f"{prefix}/docs/favicon.png",
            with_google_fonts=False,
        )

    @router.get(f"{prefix}/docs/redoc.standalone.js")
    async def redoc_js() -> Response:
        return _asset("redoc.standalone.js", "application/javascript")

    @router.get(f"{prefix}/docs/favicon.png")
    async def favicon() -> Response:
        return _asset("favicon.png", "image/png")

    return router
