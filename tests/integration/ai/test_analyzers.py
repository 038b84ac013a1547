"""The built-in analyzers through `process_ai_analyses` on archived files: rules queue them on arrival, the
completeness analyzer finds a gap made on purpose, quality reads the synthetic air HU, dose reads CTDIvol from
images and a dose SR, the ONNX runner returns a tiny model's known output."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from onnx import TensorProto, helper
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, generate_uid

from noctis_pro.ai.analyzers import registry
from noctis_pro.ai.models import AIAnalysis, AnalysisRule
from noctis_pro.ai.receivers import analyses_queue_for_studies
from noctis_pro.contracts.analyses import BUILTIN_SCOPES
from noctis_pro.pacs.indexing import receipts_index
from noctis_pro.pacs.models import Study
from tests.conftest import make_dataset
from tests.integration.ai.series import AIR_HU, NOISE_SD, ct_slice
from tests.integration.django.receipts import receipt_insert

DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
IMAGE_KEYWORDS = (
    "PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
)  # fmt: skip


def index(storage_root: Path, datasets: list[Dataset], *, calling_ae: str = "MODALITY1") -> Study:
    ids = [receipt_insert(ds=ds, storage_root=storage_root, calling_ae=calling_ae).pk for ds in datasets]
    receipts_index(receipt_ids=ids)
    return Study.objects.get(study_instance_uid=datasets[0].StudyInstanceUID)


def ct_series(study_uid: str, *, numbers: list[int], spacing: float = 2.0, **attrs: Any) -> list[Dataset]:
    series_uid = generate_uid()
    return [ct_slice(study_uid=study_uid, series_uid=series_uid, number=n, z=n * spacing, **attrs) for n in numbers]


def run_all() -> None:
    call_command("process_ai_analyses", stdout=io.StringIO())


def test_builtin_analyzers_match_the_api_contract() -> None:
    assert {name: a.scope for name, a in registry().items()} == BUILTIN_SCOPES


@pytest.mark.django_db
def test_rule_queues_completeness_per_arriving_series_which_finds_the_gap(storage_root: Path) -> None:
    AnalysisRule.objects.create(name="ct-completeness", analyzer="series_completeness", modality="CT",
                                calling_ae="CT_SCANNER")  # fmt: skip
    study_uid = generate_uid()
    study = index(storage_root, ct_series(study_uid, numbers=[n for n in range(1, 13) if n != 6]),
                  calling_ae="CT_SCANNER")  # fmt: skip
    other = index(storage_root, ct_series(generate_uid(), numbers=[1, 2, 3]), calling_ae="ELSEWHERE")

    assert not AIAnalysis.objects.filter(study=other).exists()  # the rule names another sender
    (analysis,) = AIAnalysis.objects.filter(study=study)
    assert (analysis.analyzer, analysis.requested_by, analysis.series_id is not None) == (
        "series_completeness", "rule:ct-completeness", True
    )  # fmt: skip
    run_all()
    analysis.refresh_from_db()
    assert analysis.status == "done", analysis.error
    assert analysis.duration_ms is not None
    result = analysis.result
    assert result["instances"] == 11
    assert result["missing_instance_numbers"] == [6]
    assert result["slice_spacing_mm"] == 2.0
    assert result["gaps"] == [{"after_mm": 10.0, "before_mm": 14.0, "distance_mm": 4.0, "missing_slices": 1}]
    assert result["complete"] is False


@pytest.mark.django_db
def test_a_rule_naming_an_unknown_analyzer_does_not_validate() -> None:
    with pytest.raises(ValidationError, match="unknown analyzer 'crystal_ball'"):
        AnalysisRule(name="x", analyzer="crystal_ball").full_clean()


@pytest.mark.django_db
def test_quality_reads_the_air_hu_and_noise_of_the_synthetic_ct(storage_root: Path) -> None:
    study = index(storage_root, ct_series(generate_uid(), numbers=list(range(1, 8))))
    analyses_queue_for_studies(study_ids={study.pk}, analyzers=["image_quality"])
    run_all()
    analysis = AIAnalysis.objects.get(study=study, analyzer="image_quality")
    assert analysis.status == "done", analysis.error
    result = analysis.result
    assert result["slices_measured"] == 5
    assert result["ct_air_hu"] == pytest.approx(AIR_HU, abs=3.0)
    assert result["ct_air_within_tolerance"] is True
    assert result["noise_sd"] == pytest.approx(NOISE_SD, rel=0.2)
    assert result["snr"] == pytest.approx(1040 / result["noise_sd"], rel=0.05)
    assert result["clipped_fraction"] == 0.0


@pytest.mark.django_db
def test_series_analyzer_asked_for_a_report_fails_without_retry(storage_root: Path) -> None:
    sr = dose_sr(generate_uid(), ctdivol=1.0, dlp=2.0)
    study = index(storage_root, [sr])
    series = study.series.get()
    analysis = AIAnalysis.objects.create(study=study, series=series, analyzer="image_quality")
    run_all()
    analysis.refresh_from_db()
    assert (analysis.status, analysis.attempts) == ("failed", 1)
    assert analysis.error == "not applicable: image_quality does not apply to SR series"


def dose_sr(study_uid: str, *, ctdivol: float, dlp: float) -> Dataset:
    ds = make_dataset(modality="SR", study_uid=study_uid)
    for keyword in IMAGE_KEYWORDS:
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DOSE_SR

    def num(code: str, value: float, unit: str) -> Dataset:
        item, concept, measured, units = Dataset(), Dataset(), Dataset(), Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "NUM"
        concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = code, "DCM", code
        units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = unit, "UCUM", unit
        measured.NumericValue = value
        measured.MeasurementUnitsCodeSequence = Sequence([units])
        item.ConceptNameCodeSequence = Sequence([concept])
        item.MeasuredValueSequence = Sequence([measured])
        return item

    event = Dataset()
    event.RelationshipType, event.ValueType = "CONTAINS", "CONTAINER"
    event.ContentSequence = Sequence([num("113830", ctdivol, "mGy"), num("113838", dlp, "mGy.cm")])
    ds.ValueType = "CONTAINER"
    ds.ContentSequence = Sequence([event])
    return ds


@pytest.mark.django_db
def test_dose_reads_ctdivol_from_images_and_a_dose_sr(storage_root: Path) -> None:
    study_uid = generate_uid()
    images = ct_series(study_uid, numbers=list(range(1, 11)), spacing=5.0, CTDIvol=12.5, SliceThickness=5.0)
    study = index(storage_root, [*images, dose_sr(study_uid, ctdivol=12.5, dlp=640.0)])
    analyses_queue_for_studies(study_ids={study.pk}, analyzers=["radiation_dose"])
    run_all()
    (analysis,) = AIAnalysis.objects.filter(study=study, analyzer="radiation_dose")  # study scope: one
    assert analysis.status == "done", analysis.error
    result = analysis.result
    (image_series,) = result["image_series"]
    assert image_series["images_with_ctdivol"] == 10
    assert image_series["ctdivol_mean_mgy"] == 12.5
    assert image_series["scan_length_cm"] == 5.0  # 45 mm between the first and last slice + 5 mm thickness
    assert image_series["dlp_estimated_mgy_cm"] == 62.5
    assert result["dose_reports"][0]["ctdivol_mgy"] == [12.5]
    assert (result["dlp_total_mgy_cm"], result["dlp_source"], result["ctdivol_max_mgy"]) == (640.0, "dose_sr", 12.5)


def tiny_model(path: Path) -> Path:
    """y = mean(x) * W + B, W = [[2, -4]], B = [0.25, 1]: its output is known exactly for any input."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "W"], ["mw"]),
            helper.make_node("Add", ["mw", "B"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[
            helper.make_tensor("W", TensorProto.FLOAT, [1, 2], [2.0, -4.0]),
            helper.make_tensor("B", TensorProto.FLOAT, [2], [0.25, 1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.mark.django_db
def test_onnx_runner_returns_the_tiny_models_known_output(storage_root: Path, tmp_path: Path, settings: Any) -> None:
    tiny_model(tmp_path / "tiny.onnx")
    (tmp_path / "tiny.json").write_text(json.dumps({
        "name": "tiny_mean", "model": "tiny.onnx", "modalities": ["CT"],
        "input": {"size": [8, 8], "window": {"center": 40, "width": 400}},
        "output": {"labels": ["twice", "minus_four_times"]},
    }))  # fmt: skip
    settings.AI_ONNX_MODELS = [str(tmp_path / "tiny.json")]
    # HU 140 everywhere: windowed (140 - (40 - 200)) / 400 = 0.75, so y = [0.75 * 2 + 0.25, 0.75 * -4 + 1].
    study = index(storage_root, ct_series(generate_uid(), numbers=[1, 2, 3], uniform=140.0))
    analyses_queue_for_studies(study_ids={study.pk}, analyzers=["tiny_mean"])
    run_all()
    analysis = AIAnalysis.objects.get(study=study, analyzer="tiny_mean")
    assert analysis.status == "done", analysis.error
    assert analysis.result["outputs"] == {"twice": 1.75, "minus_four_times": -2.0}
    assert analysis.result["top_label"] == "twice"
    assert analysis.result["slices_used"] == 1
    np.testing.assert_array_equal(analysis.result["values"], [1.75, -2.0])


@pytest.mark.django_db
def test_a_study_rule_queues_once_per_study_and_only_for_series_it_applies_to(storage_root: Path) -> None:
    AnalysisRule.objects.create(name="dose-any", analyzer="radiation_dose")  # blank conditions: any series
    study_uid = generate_uid()
    mr = index(storage_root, [make_dataset(modality="MR", study_uid=study_uid)])
    assert not AIAnalysis.objects.filter(study=mr).exists()  # an MR series has no dose to read
    index(storage_root, ct_series(study_uid, numbers=[1, 2]) + ct_series(study_uid, numbers=[1, 2]))
    (dose,) = AIAnalysis.objects.filter(study=mr)  # two CT series, one study-wide analysis
    assert (dose.analyzer, dose.series_id, dose.requested_by) == ("radiation_dose", None, "rule:dose-any")


@pytest.mark.django_db
def test_onnx_runner_averages_every_slice_and_a_missing_model_fails_at_once(
    storage_root: Path, tmp_path: Path, settings: Any
) -> None:
    tiny_model(tmp_path / "tiny.onnx")
    (tmp_path / "all.json").write_text(json.dumps({
        "name": "tiny_all", "model": "tiny.onnx", "input": {"size": [8, 8], "window": {"center": 40, "width": 400},
        "slices": "all"},
    }))  # fmt: skip
    (tmp_path / "gone.json").write_text(json.dumps({"name": "tiny_gone", "model": "gone.onnx"}))
    settings.AI_ONNX_MODELS = [str(tmp_path / "all.json"), str(tmp_path / "gone.json")]
    study_uid, series_uid = generate_uid(), generate_uid()
    # Slices of HU -160 (window floor: 0), 40 (0.5) and 240 (window top: 1): the mean input is 0.5.
    series = [ct_slice(study_uid=study_uid, series_uid=series_uid, number=n, z=float(n), uniform=hu)
              for n, hu in ((1, -160.0), (2, 40.0), (3, 240.0))]  # fmt: skip
    study = index(storage_root, series)
    analyses_queue_for_studies(study_ids={study.pk}, analyzers=["tiny_all", "tiny_gone"])
    run_all()
    done = AIAnalysis.objects.get(study=study, analyzer="tiny_all")
    assert done.status == "done", done.error
    assert (done.result["slices_used"], done.result["values"]) == (3, [1.25, -1.0])
    failed = AIAnalysis.objects.get(study=study, analyzer="tiny_gone")
    assert (failed.status, failed.attempts) == ("failed", 1)  # no retry fixes a missing file
    assert failed.error == f"model file {tmp_path / 'gone.onnx'} not found"


@pytest.mark.django_db
def test_quality_reads_compressed_pixels_like_uncompressed_ones(storage_root: Path) -> None:
    study_uid = generate_uid()
    plain = ct_series(study_uid, numbers=[1, 2, 3])
    compressed = ct_series(study_uid, numbers=[1, 2, 3])
    for ds, same in zip(compressed, plain, strict=True):
        ds.PixelData = same.PixelData  # the same pixels, stored as JPEG 2000 lossless (decoded by pylibjpeg)
        ds.compress(JPEG2000Lossless)
    study = index(storage_root, plain + compressed)
    analyses_queue_for_studies(study_ids={study.pk}, analyzers=["image_quality"])
    run_all()
    results = {
        a.series.series_instance_uid: a.result for a in AIAnalysis.objects.filter(study=study).select_related("series")
    }
    assert all(a.status == "done" for a in AIAnalysis.objects.filter(study=study))
    first, second = results[plain[0].SeriesInstanceUID], results[compressed[0].SeriesInstanceUID]
    assert {k: v for k, v in first.items() if k != "series_instance_uid"} == {
        k: v for k, v in second.items() if k != "series_instance_uid"
    }
    assert second["ct_air_hu"] == pytest.approx(AIR_HU, abs=5.0)
