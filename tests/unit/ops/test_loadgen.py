"""The load generator's arithmetic: nearest-rank percentiles and requests/s."""

from __future__ import annotations

import random

import pytest

from ops.loadgen import LoadResult, percentile


def test_percentile_is_nearest_rank_of_unsorted_values() -> None:
    values = [float(v) for v in range(1, 101)]
    random.Random(3).shuffle(values)
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0.5) == 1.0


def test_percentile_of_few_values_is_their_largest_for_p99() -> None:
    assert percentile([5.0, 1.0, 3.0], 99) == 5.0
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([7.0], 50) == 7.0


@pytest.mark.parametrize("p", [0, -1, 100.1])
def test_percentile_refuses_p_outside_0_100(p: float) -> None:
    with pytest.raises(ValueError, match="p must be"):
        percentile([1.0], p)


def test_percentile_refuses_no_values() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_load_summary_counts_answered_requests_per_second() -> None:
    result = LoadResult(concurrency=2, requests=4, errors=1, seconds=2.0, latencies_ms=[4.0, 1.0, 3.0, 2.0])
    summary = result.summary()
    assert summary["rps"] == 2.0
    assert (summary["p50_ms"], summary["p99_ms"], summary["max_ms"]) == (2.0, 4.0, 4.0)
    assert summary["errors"] == 1
    assert "latencies_ms" not in summary
