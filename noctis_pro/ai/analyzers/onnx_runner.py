"""A model runner for ONNX models the operator provides (onnxruntime). One analyzer per JSON config file:

    {"name": "my_model",                         analyzer name (rules and the API use it)
     "model": "my_model.onnx",                   relative to the config file's folder, or absolute
     "modalities": ["CT"],                       optional: the series it applies to (default: any image series)
     "input": {"size": [rows, columns],          resized (block mean for whole factors, else bilinear)
               "window": {"center": c, "width": w},   optional: clip to the window and map to [0, 1]
               "normalise": {"mean": m, "std": s},    optional: (x - m) / s after the window
               "slices": "middle" | "all"},      one slice, or every slice with the outputs averaged
     "output": {"labels": ["a", "b"], "softmax": false}}

The first model input gets the image as float32, shaped [1, 1, rows, columns] (or fewer leading ones, following the
input's rank); the first output, flattened, is mapped to the labels in order. The result reports the numbers the
model produced; what they mean is the model's business, not a diagnosis by NoctisPro.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from noctis_pro.ai.analyzers.base import AnalysisContext, AnalyzerOutput, PermanentError, SeriesFacts
from noctis_pro.ai.analyzers.pixels import frame_read, is_image_series


class ModelConfigError(PermanentError):
    """The operator's model config or model file is unusable: the analysis fails at once, naming the problem."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    model_path: Path
    modalities: frozenset[str]
    size: tuple[int, int] | None
    window: tuple[float, float] | None  # centre, width
    normalise: tuple[float, float] | None  # mean, std
    all_slices: bool
    labels: tuple[str, ...]
    softmax: bool


def model_config_load(path: Path) -> ModelConfig:
    """Read and check a model config; ModelConfigError names the problem."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelConfigError(f"{path}: cannot read the model config ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw.get("model"):
        raise ModelConfigError(f"{path}: a model config needs a 'name' and a 'model' file")
    model_path = Path(raw["model"])
    if not model_path.is_absolute():
        model_path = path.parent / model_path
    inp, out = raw.get("input", {}), raw.get("output", {})
    try:
        size = tuple(int(v) for v in inp["size"]) if inp.get("size") else None
        window = (float(inp["window"]["center"]), float(inp["window"]["width"])) if inp.get("window") else None
        normalise = (float(inp["normalise"]["mean"]), float(inp["normalise"]["std"])) if inp.get("normalise") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelConfigError(f"{path}: bad 'input' section ({exc!r})") from exc
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ModelConfigError(f"{path}: input.size must be [rows, columns]")
    if (window is not None and window[1] <= 0) or (normalise is not None and normalise[1] == 0):
        raise ModelConfigError(f"{path}: window width and normalise std must be positive")
    return ModelConfig(
        name=raw["name"],
        model_path=model_path,
        modalities=frozenset(m.upper() for m in raw.get("modalities", [])),
        size=size,  # type: ignore[arg-type]
        window=window,
        normalise=normalise,
        all_slices=inp.get("slices", "middle") == "all",
        labels=tuple(str(v) for v in out.get("labels", [])),
        softmax=bool(out.get("softmax", False)),
    )


def resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows, columns = values.shape
    target_rows, target_columns = size
    if (rows, columns) == size:
        return values
    if rows % target_rows == 0 and columns % target_columns == 0:  # exact: the mean of each block
        fy, fx = rows // target_rows, columns // target_columns
        return values.reshape(target_rows, fy, target_columns, fx).mean(axis=(1, 3))
    image = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(image.resize((target_columns, target_rows), Image.Resampling.BILINEAR), dtype=np.float64)


def preprocess(values: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Resize, window, normalise: the model's input image (float32)."""
    x = resize(values.astype(np.float64), config.size) if config.size else values.astype(np.float64)
    if config.window is not None:
        centre, width = config.window
        low = centre - width / 2
        x = np.clip((x - low) / width, 0.0, 1.0)
    if config.normalise is not None:
        mean, std = config.normalise
        x = (x - mean) / std
    return x.astype(np.float32)


def outputs_map(raw: np.ndarray, config: ModelConfig) -> dict[str, Any]:
    values = np.asarray(raw, dtype=np.float64).ravel()
    if config.softmax:
        shifted = np.exp(values - values.max())
        values = shifted / shifted.sum()
    out: dict[str, Any] = {"values": [float(v) for v in values]}
    if config.labels:
        if len(config.labels) != values.size:
            raise ModelConfigError(f"the model gave {values.size} outputs for {len(config.labels)} labels")
        out["outputs"] = {label: float(v) for label, v in zip(config.labels, values, strict=True)}
        out["top_label"] = config.labels[int(values.argmax())]
    return out


class OnnxModel:
    """An analyzer running one operator-configured ONNX model on a series (scope: series)."""

    scope = "series"

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.name = config.name
        self._session: Any = None
        self._lock = threading.Lock()

    def applies_to(self, facts: SeriesFacts) -> bool:
        modalities = self.config.modalities
        return is_image_series(facts) and (not modalities or facts.modality.upper() in modalities)

    def _session_get(self) -> Any:
        with self._lock:  # loaded once per processor, on first use
            if self._session is None:
                import onnxruntime

                if not self.config.model_path.is_file():
                    raise ModelConfigError(f"model file {self.config.model_path} not found")
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = 1
                self._session = onnxruntime.InferenceSession(
                    str(self.config.model_path), options, providers=["CPUExecutionProvider"]
                )
            return self._session

    def infer(self, values: np.ndarray) -> np.ndarray:
        session = self._session_get()
        model_input = session.get_inputs()[0]
        x = preprocess(values, self.config)
        rank = len(model_input.shape) if model_input.shape else 4
        x = x.reshape((1,) * max(0, rank - 2) + x.shape)
        return np.asarray(session.run(None, {model_input.name: x})[0])

    def run(self, context: AnalysisContext) -> AnalyzerOutput:
        (series,) = context.series
        instances = list(series.instances)
        if not instances:
            raise ValueError("the series has no instances")
        chosen = instances if self.config.all_slices else [instances[len(instances) // 2]]
        raw = np.mean([self.infer(frame_read(i.path)[2]) for i in chosen], axis=0)
        result = {
            "model": self.config.model_path.name,
            "series_instance_uid": series.series_instance_uid,
            "slices": [i.sop_instance_uid for i in chosen][:10],
            "slices_used": len(chosen),
            **outputs_map(raw, self.config),
        }
        return AnalyzerOutput(result=result)
