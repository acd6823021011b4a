"""Run every benchmark in turn: `python -m bench`."""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = ["bench.key_pool", "bench.edge", "bench.e2e", "bench.bridge", "bench.soak"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        runpy.run_module(name, run_name="__main__")
