"""The analyzer registry: built-in analyzers, plugins named in settings or entry points, and ONNX model configs.

- AI_ANALYZER_PLUGINS: "package.module:ClassName" (or "package.module.ClassName") entries, each instantiated once;
- the "noctis_pro.analyzers" entry-point group: installed packages expose analyzer classes the same way;
- AI_ONNX_MODELS: paths of ONNX model configs (see onnx_runner), one analyzer each.
A plugin is any object with the interface in analyzers.base. A later entry never replaces an earlier name.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from django.conf import settings

from noctis_pro.ai.analyzers.base import Analyzer
from noctis_pro.ai.analyzers.completeness import SeriesCompleteness
from noctis_pro.ai.analyzers.dose import RadiationDose
from noctis_pro.ai.analyzers.inventory import StudyInventory
from noctis_pro.ai.analyzers.onnx_runner import OnnxModel, model_config_load
from noctis_pro.ai.analyzers.quality import ImageQuality

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "noctis_pro.analyzers"
BUILTIN: tuple[Analyzer, ...] = (StudyInventory(), SeriesCompleteness(), ImageQuality(), RadiationDose())
ANALYZERS: dict[str, Analyzer] = {}
_loaded = False


def _dotted(path: str) -> Any:
    module, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def registry() -> dict[str, Analyzer]:
    """Every analyzer by name, loaded on first use. A plugin that cannot load is logged and skipped."""
    global _loaded
    if _loaded:
        return ANALYZERS
    found: list[Analyzer] = list(BUILTIN)
    for path in settings.AI_ANALYZER_PLUGINS:
        try:
            found.append(_dotted(path)())
        except Exception:  # a broken plugin must not stop the built-in analyzers
            logger.exception("analyzer plugin %r cannot be loaded", path)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append(ep.load()())
        except Exception:
            logger.exception("analyzer entry point %r cannot be loaded", ep.value)
    for config_path in settings.AI_ONNX_MODELS:
        try:
            found.append(OnnxModel(model_config_load(Path(config_path))))
        except ValueError:
            logger.exception("ONNX model config %s cannot be loaded", config_path)
    for analyzer in found:
        ANALYZERS.setdefault(analyzer.name, analyzer)
    _loaded = True
    return ANALYZERS


def registry_reset() -> None:
    """Forget the loaded plugins (tests that change the settings)."""
    global _loaded
    ANALYZERS.clear()
    _loaded = False


def analyzer_for(name: str) -> Analyzer | None:
    return registry().get(name)
