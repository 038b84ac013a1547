"""AI analyzer names and scopes that the API may queue, shared by noctis_pro.ai and fastapi_app (no Django).

The built-in analyzers are listed here; operator-configured ONNX models (AI_ONNX_MODELS: JSON configs, each with a
"name") are series-scoped. noctis_pro/ai/analyzers registers the same names (a unit test keeps them in step).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

STUDY = "study"
SERIES = "series"

BUILTIN_SCOPES: dict[str, str] = {
    "study_inventory": STUDY,
    "series_completeness": SERIES,
    "image_quality": SERIES,
    "radiation_dose": STUDY,
}
# Series without a pixel matrix: a series-scoped analyzer requested for a whole study skips them.
NON_IMAGE_MODALITIES = ("SR", "PR", "KO", "DOC", "RTSTRUCT", "RTPLAN", "ECG", "AU", "SEG", "REG")


def onnx_model_names(config_paths: Iterable[str]) -> list[str]:
    """The analyzer names of the readable ONNX model configs (unreadable ones are left out)."""
    names = []
    for path in config_paths:
        try:
            name = json.loads(Path(path).read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(name, str) and name:
            names.append(name)
    return names


def analyzer_scopes(*, onnx_config_paths: Iterable[str] = ()) -> dict[str, str]:
    """Name -> scope of every analyzer the API accepts."""
    scopes = dict(BUILTIN_SCOPES)
    for name in onnx_model_names(onnx_config_paths):
        scopes.setdefault(name, SERIES)
    return scopes
