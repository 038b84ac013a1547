"""OpenAPI is served under /api/v1 and documents every route with its response models; CORS follows settings."""

from __future__ import annotations

import re

import httpx

from fastapi_app.settings import Settings


async def test_openapi_lists_the_routes(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert {
        "/api/v1/health",
        "/api/v1/me",
        "/api/v1/studies",
        "/api/v1/studies/{study_uid}",
        "/api/v1/series/{series_uid}/instances",
    } <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert {"StudyPage", "StudyOut", "StudyDetail", "SeriesOut", "SeriesInstancesOut", "InstanceOut"} <= set(schemas)
    study_list = spec["paths"]["/api/v1/studies"]["get"]
    assert {p["name"] for p in study_list["parameters"]} >= {"patient_name", "modality", "sort", "limit", "offset"}


async def test_docs_page_loads_nothing_from_outside(api: httpx.AsyncClient) -> None:
    """Hospital networks often have no internet: the reference and its script are served by us."""
    page = await api.get("/api/v1/docs")
    assert page.status_code == 200
    assert re.findall(r"(?:src|href)=\"(https?://[^\"]+)", page.text) == []
    assert "/api/v1/docs/redoc.standalone.js" in page.text
    script = await api.get("/api/v1/docs/redoc.standalone.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")
    assert len(script.content) > 100_000


async def test_cors_allows_only_configured_origins(api_settings: Settings, api_for) -> None:
    settings = api_settings.model_copy(update={"cors_allowed_origins": ["https://viewer.example"]})
    async for client in api_for(settings):
        allowed = await client.options(
            "/api/v1/studies",
            headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"},
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://viewer.example"
        ranged = await client.options(
            "/api/v1/studies",
            headers={
                "Origin": "https://viewer.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "range, if-none-match",
            },
        )
        assert ranged.status_code == 200
        exposed = await client.get("/api/v1/health", headers={"Origin": "https://viewer.example"})
        assert "etag" in exposed.headers["access-control-expose-headers"].lower()
        other = await client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_openapi_documents_stow_rs(api: httpx.AsyncClient) -> None:
    """STOW-RS is in the reference with its request media types and the statuses PS3.18 gives it."""
    spec = (await api.get("/api/v1/openapi.json")).json()
    for path in ("/api/v1/dicomweb/studies", "/api/v1/dicomweb/studies/{study}"):
        store = spec["paths"][path]["post"]
        assert store["summary"].startswith("STOW-RS")
        content = store["requestBody"]["content"]
        assert 'multipart/related; type="application/dicom"' in content
        assert "application/dicom" in content
        assert {"200", "202", "409", "415", "401"} <= set(store["responses"])
        assert "application/dicom+json" in store["responses"]["200"]["content"]
