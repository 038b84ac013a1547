"""fastapi_app stands alone: importing it loads noctis_pro.contracts and never Django."""

from __future__ import annotations

import os
import subprocess
import sys

from fastapi_app.settings import BASE_DIR, Settings


def test_app_import_loads_no_django() -> None:
    code = (
        "import sys, fastapi_app.main;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django'}),"
        " sorted(m for m in sys.modules if m.startswith('noctis_pro.') and not m.startswith('noctis_pro.contracts')))"
    )
    env = {**os.environ, "DJANGO_SECRET_KEY": "x" * 50}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[] []"


def test_create_app_carries_its_settings_in_state_not_as_an_override(api_settings: Settings) -> None:
    """While any dependency override is set, FastAPI re-analyses every dependency's signature on every request
    (a search then costs about twice the CPU): create_app must leave them to tests."""
    from fastapi_app.main import create_app

    app = create_app(api_settings)
    assert app.dependency_overrides == {}
    assert app.state.settings is api_settings
