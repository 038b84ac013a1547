"""The pure math of the analyzers on synthetic arrays: slice geometry, image quality figures, dose SR parsing,
ONNX pre-processing and output mapping."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from noctis_pro.ai.analyzers.completeness import SliceGeometry, missing_numbers, stack_completeness
from noctis_pro.ai.analyzers.dose import dose_from_sr
from noctis_pro.ai.analyzers.onnx_runner import (
    ModelConfig,
    ModelConfigError,
    model_config_load,
    outputs_map,
    preprocess,
)
from noctis_pro.ai.analyzers.quality import frame_quality, sampled, series_quality

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def stack(zs: list[float], *, orientation: tuple[float, ...] = AXIAL, size: tuple[int, int] = (64, 64)) -> list:
    return [SliceGeometry(n, (10.0, -5.0, z), orientation, size) for n, z in enumerate(zs, start=1)]


def test_stack_completeness_regular_stack_is_complete() -> None:
    result = stack_completeness(stack([i * 2.5 for i in range(20)]))
    assert result["complete"] is True
    assert result["slice_spacing_mm"] == 2.5
    assert (result["gaps"], result["missing_slices"], result["uneven_spacing"]) == ([], 0, False)


def test_stack_completeness_finds_a_gap_of_two_slices() -> None:
    zs = [i * 2.0 for i in range(10) if i not in (4, 5)]  # slices at 8 mm and 10 mm are missing
    result = stack_completeness(stack(zs))
    assert result["complete"] is False
    assert result["slice_spacing_mm"] == 2.0
    assert result["gaps"] == [{"after_mm": 6.0, "before_mm": 12.0, "distance_mm": 6.0, "missing_slices": 2}]
    assert result["missing_slices"] == 2
    assert result["missing_instance_numbers"] == []  # renumbered: only the geometry shows the gap


def test_stack_completeness_projects_positions_on_the_normal_of_an_oblique_stack() -> None:
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    orientation = (1.0, 0.0, 0.0, 0.0, c, s)  # tilted about x: normal = (0, -s, c)
    normal = np.cross(orientation[:3], orientation[3:])
    slices = [
        SliceGeometry(n, tuple(float(v) for v in np.array([3.0, 1.0, 2.0]) + normal * n * 1.25), orientation, (32, 32))
        for n in range(1, 13)
    ]
    result = stack_completeness(slices)
    assert result["slice_spacing_mm"] == pytest.approx(1.25, abs=1e-4)
    assert result["complete"] is True


def test_stack_completeness_uneven_spacing_mixed_orientation_and_size() -> None:
    slices = stack([0.0, 1.0, 2.0, 3.3, 4.3, 5.3])
    slices.append(SliceGeometry(7, (0.0, 0.0, 6.3), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (64, 64)))
    slices.append(SliceGeometry(8, (0.0, 0.0, 7.3), AXIAL, (128, 128)))
    result = stack_completeness(slices)
    assert result["uneven_spacing"] is True
    assert result["mixed_orientations"] is True
    assert result["orientations"] == 2
    assert result["mixed_sizes"] is True
    assert result["sizes"] == ["128x128", "64x64"]


def test_missing_and_duplicate_instance_numbers() -> None:
    slices = [SliceGeometry(n, None, None, None) for n in (1, 2, 2, 5)]
    result = stack_completeness(slices)
    assert result["missing_instance_numbers"] == [3, 4]
    assert result["duplicate_instance_numbers"] == [2]
    assert missing_numbers([]) == []


def synthetic_ct(*, air: float, noise: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = air + rng.normal(0, noise, (128, 128))
    yy, xx = np.mgrid[0:128, 0:128]
    body = (yy - 64) ** 2 + (xx - 64) ** 2 < 45**2
    values[body] = 40 + rng.normal(0, noise, body.sum())
    return values


def test_frame_quality_measures_air_noise_and_snr() -> None:
    values = synthetic_ct(air=-1000.0, noise=12.0)
    stored = (values + 1024).round().astype(np.int16)
    q = frame_quality(values, stored, stored_min=-32768, stored_max=32767)
    assert q["background_mean"] == pytest.approx(-1000.0, abs=3.0)
    assert q["noise_sd"] == pytest.approx(12.0, rel=0.15)
    assert q["snr"] == pytest.approx(1040.0 / q["noise_sd"], rel=0.02)
    assert (q["clipped_fraction"], q["saturated_fraction"]) == (0.0, 0.0)


def test_frame_quality_counts_clipped_and_saturated_pixels() -> None:
    stored = np.full((64, 64), 100, dtype=np.uint16)
    stored[:8, :] = 0  # 1/8 clipped at the format's minimum
    stored[-16:, :] = 4095  # 1/4 saturated at 12 bits
    q = frame_quality(stored.astype(float), stored, stored_min=0, stored_max=4095)
    assert q["clipped_fraction"] == pytest.approx(0.125)
    assert q["saturated_fraction"] == pytest.approx(0.25)


def test_series_quality_reports_ct_air_within_tolerance() -> None:
    frames = [{"noise_sd": s, "background_mean": b, "signal_mean": 40.0, "snr": 100.0, "clipped_fraction": 0.0,
               "saturated_fraction": 0.0} for s, b in ((10, -1001), (11, -998), (30, -900))]  # fmt: skip
    result = series_quality(frames, ct=True)
    assert (result["noise_sd"], result["ct_air_hu"], result["ct_air_within_tolerance"]) == (11, -998, True)
    assert series_quality([{**frames[0], "background_mean": -850.0}], ct=True)["ct_air_within_tolerance"] is False
    assert "ct_air_hu" not in series_quality(frames, ct=False)


def test_sampled_spreads_over_the_series() -> None:
    assert sampled(list(range(300))) == [0, 75, 150, 224, 299]
    assert sampled([1, 2]) == [1, 2]


def _num(code: str, value: float, unit: str) -> Dataset:
    item = Dataset()
    item.ValueType = "NUM"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = code, "DCM", code
    item.ConceptNameCodeSequence = Sequence([concept])
    measured = Dataset()
    measured.NumericValue = value
    units = Dataset()
    units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = unit, "UCUM", unit
    measured.MeasurementUnitsCodeSequence = Sequence([units])
    item.MeasuredValueSequence = Sequence([measured])
    return item


def test_dose_from_sr_reads_ctdivol_and_dlp_at_any_depth() -> None:
    event1, event2 = Dataset(), Dataset()
    event1.ValueType = event2.ValueType = "CONTAINER"
    event1.ContentSequence = Sequence([_num("113830", 12.5, "mGy"), _num("113838", 450.0, "mGy.cm")])
    event2.ContentSequence = Sequence([_num("113830", 8.0, "mGy"), _num("113838", 120.0, "mGy.cm")])
    accumulated = Dataset()
    accumulated.ValueType = "CONTAINER"
    accumulated.ContentSequence = Sequence([_num("113813", 570.0, "mGy.cm")])
    sr = Dataset()
    sr.SOPInstanceUID = "1.2.3"
    sr.ContentSequence = Sequence([accumulated, event1, event2])
    result = dose_from_sr(sr)
    assert result == {"sop_instance_uid": "1.2.3", "ctdivol_mgy": [12.5, 8.0], "dlp_mgy_cm": [450.0, 120.0],
                      "dlp_total_mgy_cm": 570.0}  # fmt: skip


def config(**kwargs: object) -> ModelConfig:
    base = {"name": "m", "model_path": None, "modalities": frozenset(), "size": None, "window": None,
            "normalise": None, "all_slices": False, "labels": (), "softmax": False}  # fmt: skip
    return ModelConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_preprocess_resizes_by_block_mean_windows_and_normalises() -> None:
    image = np.arange(16, dtype=float).reshape(4, 4) * 100 - 800  # -800 .. 700
    x = preprocess(image, config(size=(2, 2), window=(0.0, 1000.0), normalise=(0.5, 0.25)))
    blocks = np.array([[-550.0, -350.0], [250.0, 450.0]])  # block means
    expected = ((np.clip((blocks + 500) / 1000, 0, 1)) - 0.5) / 0.25
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, expected, rtol=1e-6)


def test_outputs_map_labels_and_softmax() -> None:
    out = outputs_map(np.array([[1.0, 3.0]]), config(labels=("low", "high"), softmax=True))
    assert out["top_label"] == "high"
    assert out["outputs"]["high"] == pytest.approx(np.exp(3) / (np.exp(1) + np.exp(3)))
    with pytest.raises(ValueError, match="3 outputs for 2 labels"):
        outputs_map(np.array([1.0, 2.0, 3.0]), config(labels=("a", "b")))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "cannot read the model config"),
        ('{"model": "m.onnx"}', "needs a 'name' and a 'model' file"),
        ('{"name": "m", "model": "m.onnx", "input": {"size": [8]}}', "input.size must be [rows, columns]"),
        ('{"name": "m", "model": "m.onnx", "input": {"window": {"center": 0}}}', "bad 'input' section"),
        ('{"name": "m", "model": "m.onnx", "input": {"normalise": {"mean": 0, "std": 0}}}', "must be positive"),
    ],
)
def test_model_config_errors_name_the_problem(tmp_path: Path, raw: str, message: str) -> None:
    path = tmp_path / "model.json"
    path.write_text(raw)
    with pytest.raises(ModelConfigError, match=re.escape(message)):
        model_config_load(path)


def test_model_config_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "model.json"
    path.parent.mkdir()
    path.write_text('{"name": "m", "model": "m.onnx", "modalities": ["ct"], "input": {"slices": "all"}}')
    config = model_config_load(path)
    assert config.model_path == tmp_path / "cfg" / "m.onnx"
    assert (config.modalities, config.all_slices, config.size, config.window) == (frozenset({"CT"}), True, None, None)
