"""The benchmarks' pure figures: median and spread of repeated rounds, and percentiles of
latencies when some never arrived (nothing runs)."""

from __future__ import annotations

import pytest

from bench.stats import censored_percentiles, spread


def test_spread_gives_median_extremes_quartiles_and_the_runs_in_order() -> None:
    assert spread([5.0, 1.0, 4.0, 2.0, 3.0]) == {
        "median": 3.0,
        "min": 1.0,
        "max": 5.0,
        "q1": 2.0,
        "q3": 4.0,
        "runs": [5.0, 1.0, 4.0, 2.0, 3.0],
    }
    # Inclusive quartiles of two runs: a quarter and three quarters of the way between them.
    assert spread([3.0, 1.0]) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "q1": 1.5,
        "q3": 2.5,
        "runs": [3.0, 1.0],
    }
    one = spread([17.0])
    assert one["median"] == one["min"] == one["max"] == one["q1"] == one["q3"] == 17.0
    with pytest.raises(ValueError):
        spread([])


def test_percentiles_of_samples_that_all_arrived_are_nearest_rank() -> None:
    latencies = [n / 10 for n in range(100, 0, -1)]  # 0.1 .. 10.0, in any order
    assert censored_percentiles(latencies, 100) == {"p50": 5.0, "p95": 9.5, "p99": 9.9}
    assert censored_percentiles([0.2], 1) == {"p50": 0.2, "p95": 0.2, "p99": 0.2}


def test_a_percentile_among_the_samples_that_never_arrived_is_none() -> None:
    latencies = [n / 10 for n in range(1, 101)]
    # 100 of 200 arrived: the median is the 100th smallest; p95 and p99 are beyond the wait.
    assert censored_percentiles(latencies, 200) == {"p50": 10.0, "p95": None, "p99": None}
    # 96 of 100: the 95th is known, the 99th never came.
    assert censored_percentiles(latencies[:96], 100) == {"p50": 5.0, "p95": 9.5, "p99": None}
    assert censored_percentiles([], 20) == {"p50": None, "p95": None, "p99": None}
    assert censored_percentiles([], 0) == {"p50": None, "p95": None, "p99": None}
    with pytest.raises(ValueError):
        censored_percentiles([1.0, 2.0], 1)
