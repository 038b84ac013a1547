"""`make bench-dicomweb`'s pure parts: ratios, query values, which QIDO statement a path runs, EXPLAIN times."""

from __future__ import annotations

from ops.bench_dicomweb import execution_ms, month_range, qido_target, ratios_add


def test_ratios_are_ours_over_the_peers_and_skip_failed_cells() -> None:
    peer = {"p50_ms": 10.0, "p99_ms": 10.0, "rps": 100.0}
    rows = [
        {"noctis": {"p50_ms": 5.0, "p99_ms": 20.0, "rps": 300.0}, "orthanc": dict(peer)},
        {"noctis": {"errors": 3}, "orthanc": dict(peer)},
    ]
    ratios_add(rows, "noctis", "orthanc")
    assert (rows[0]["ratio_p50"], rows[0]["ratio_p99"], rows[0]["ratio_rps"]) == (0.5, 2.0, 3.0)
    assert "ratio_p50" not in rows[1]


def test_month_range_ends_on_the_months_last_day() -> None:
    assert month_range("202402") == "20240201-20240229"
    assert month_range("202302") == "20230201-20230228"
    assert month_range("201912") == "20191201-20191231"


def test_qido_target_matches_the_routers_levels() -> None:
    assert qido_target("/studies?PatientName=AB*&limit=100") == (("study",), None)
    assert qido_target("/studies/1.2.3/series") == (("study", "series"), {"StudyInstanceUID": ["1.2.3"]})
    assert qido_target("/studies/1.2.3/instances") == (
        ("study", "series", "instance"),
        {"StudyInstanceUID": ["1.2.3"]},
    )
    assert qido_target("/studies/1.2.3/metadata") is None


def test_execution_ms_reads_explain_analyze_text() -> None:
    plan = "Limit  (cost=1..2 rows=1)\nPlanning Time: 0.8 ms\nExecution Time: 12.345 ms"
    assert execution_ms(plan) == 12.345
    assert execution_ms("EXPLAIN not available: ValueError") is None
