"""Pure figures of the benchmarks: the median and spread of repeated measurements, and latency
percentiles when some samples never arrived within the wait."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

PERCENTILES = (50, 95, 99)


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float | list[float]]:
    """The median, min, max and quartiles (q1, q3; `statistics.quantiles`, inclusive) of
    repeated measurements, and the runs themselves in the order they were measured."""
    if not values:
        raise ValueError("no measurements")
    q1 = q3 = values[0]
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "q1": round(q1, digits),
        "q3": round(q3, digits),
        "runs": [round(v, digits) for v in values],
    }


def censored_percentiles(
    arrived: Sequence[float], sent: int, digits: int = 3
) -> dict[str, float | None]:
    """Nearest-rank percentiles (p50, p95, p99) of `sent` samples of which only `arrived`
    came back within the wait: the missing ones count as longer than any that came. The
    p-th is the ceil(p/100 x sent)-th smallest, or None when that one never came (the
    percentile is beyond the wait, not a number we can give)."""
    if len(arrived) > sent:
        raise ValueError(f"{len(arrived)} arrived of {sent} sent")
    ordered = sorted(arrived)
    figures: dict[str, float | None] = {}
    for p in PERCENTILES:
        rank = math.ceil(p / 100 * sent)
        figures[f"p{p}"] = round(ordered[rank - 1], digits) if 0 < rank <= len(ordered) else None
    return figures
