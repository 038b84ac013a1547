"""fastapi_app stands alone: importing it loads noctis_pro.contracts and never Django."""

from __future__ import annotations

import os
import subprocess
import sys

from fastapi_app.settings import BASE_DIR


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
