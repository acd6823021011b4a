"""Run the benchmarks, each in a process of its own, then print every ratio in one table.

    python -m bench                  # all of them
    python -m bench e2e bridge       # some of them

Exits non-zero when a benchmark fails (the others still run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCHMARKS = [
    "key_pool",
    "edge",
    "e2e",
    "incidents",
    "bridge",
    "priority",
    "soak",
    "console",
    "walk",
]
RESULTS = Path(__file__).resolve().parent / "results"


def ratios(record: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every figure whose name says it is a ratio (targets left out)."""
    if isinstance(record, dict):
        for key, value in record.items():
            if key != "target":
                yield from ratios(value, f"{path}{key}.")
    elif "ratio" in path and isinstance(record, int | float):
        yield path.rstrip("."), float(record)


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {unknown}; choose from {BENCHMARKS}", file=sys.stderr)
        return 2
    chosen, failed = names or BENCHMARKS, []
    for name in chosen:
        print(f"== bench.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"]).returncode != 0:
            failed.append(name)
    print("\n| benchmark | ratio | value |\n| --- | --- | --- |")
    for name in chosen:
        result = RESULTS / f"{name}.json"
        if name in failed or not result.exists():
            print(f"| {name} | (failed) | |")
            continue
        for figure, value in ratios(json.loads(result.read_text())):
            print(f"| {name} | {figure} | {value:.3f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
