"""`python -m bench`: its ratio table and its refusal of unknown names (no benchmark runs)."""

from __future__ import annotations

import subprocess
import sys

from bench.__main__ import ratios


def test_ratio_table_takes_every_ratio_but_targets() -> None:
    record = {
        "ratio_vs_baseline": 1.03,
        "target": {"ratio_vs_baseline": 0.95},
        "ratio_rss_last_vs_first": {"worker": 1.02, "bridge": 0.99},
        "latency": {"p50": 0.4},
        "benchmark": "ratio_in_a_string",
    }
    assert dict(ratios(record)) == {
        "ratio_vs_baseline": 1.03,
        "ratio_rss_last_vs_first.worker": 1.02,
        "ratio_rss_last_vs_first.bridge": 0.99,
    }


def test_unknown_benchmark_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "nope"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown benchmark(s): ['nope']" in result.stderr
