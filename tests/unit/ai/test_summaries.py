"""The worklist's AI summaries: text from each analyzer's result JSON, and nothing raised for odd results."""

from __future__ import annotations

from typing import Any

import pytest

from noctis_pro.contracts.analysis_summaries import SUMMARY_MAX, StudyAIStatus, analysis_summary


@pytest.mark.parametrize(
    ("analyzer", "result", "series_number", "expected"),
    [
        ("series_completeness", {"missing_instance_numbers": [12, 13, 14, 20], "complete": False}, 2,
         "completeness #2: gap at 12-14, 20"),
        ("series_completeness", {"instances": 40, "complete": True}, 1, "completeness #1: complete"),
        ("series_completeness", {"gaps": [{}], "missing_slices": 2, "uneven_spacing": True}, None,
         "completeness: 2 slice(s) missing, uneven spacing"),
        ("radiation_dose", {"ctdivol_max_mgy": 12.34, "dlp_total_mgy_cm": 456.0}, None,
         "dose: CTDIvol 12.3 mGy, DLP 456.0 mGy·cm"),
        ("radiation_dose", {"ctdivol_max_mgy": None}, None, "dose: no dose values"),
        ("image_quality", {"snr": 41.26, "noise_sd": 3.0, "ct_air_hu": -870.4, "ct_air_within_tolerance": False}, 3,
         "quality #3: SNR 41.3, noise SD 3.0, air -870 HU (off)"),
        ("study_inventory", {"series_count": 2, "instance_count": 9, "complete": True}, None,
         "inventory: 2 series, 9 images, no gaps"),
        ("study_inventory", {"series_count": 1, "instance_count": 5, "series": [{"instance_number_gaps": [3, 4]}]},
         None, "inventory: 1 series, 5 images, gap at 3-4"),
        ("lung_model", {"outputs": {"a": 0.1, "b": 0.9}, "top_label": "b"}, 1, "lung_model #1: b 0.90"),
        ("lung_model", {"values": [0.25, 0.5]}, None, "lung_model: output 0.250 (+1)"),
        ("plugin", {"anything": True}, None, "plugin: done"),
        ("series_completeness", {"missing_instance_numbers": "not a list"}, None, "completeness: ? images"),
        ("image_quality", ["not", "a", "dict"], None, "quality: done"),
    ],
)  # fmt: skip
def test_done_summaries(analyzer: str, result: Any, series_number: int | None, expected: str) -> None:
    assert analysis_summary(analyzer=analyzer, status="done", result=result, series_number=series_number) == expected


def test_failed_and_waiting_summaries_and_length() -> None:
    assert analysis_summary(analyzer="radiation_dose", status="failed", error="ValueError: x\n  at y") == (
        "dose: failed (ValueError: x)"
    )
    assert analysis_summary(analyzer="image_quality", status="pending", series_number=4) == "quality #4: pending"
    long = analysis_summary(analyzer="radiation_dose", status="failed", error="e" * 500)
    assert len(long) == SUMMARY_MAX
    assert long.endswith("…")


def test_badge_counts_in_a_fixed_order_and_state() -> None:
    status = StudyAIStatus()
    assert (status.badge, status.state, status.title) == ("", "none", "")
    status.add(analyzer="radiation_dose", status="failed", error="boom")
    status.add(analyzer="image_quality", status="running")
    for _ in range(11):
        status.add(analyzer="study_inventory", status="done", result={"series_count": 1, "instance_count": 1})
    assert status.badge == "AI: 11 done, 1 running, 1 failed"
    assert status.state == "failed"
    assert status.title.splitlines()[-1] == "… and 3 more"
    assert StudyAIStatus(counts={"pending": 1}).state == "busy"
    assert StudyAIStatus(counts={"done": 2}).state == "done"
