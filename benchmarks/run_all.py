"""``make bench``: run every benchmark in turn (each writes benchmarks/results/NAME.md)."""

from __future__ import annotations

import runpy
import sys

BENCHMARKS = ["benchmarks.hook_latency", "benchmarks.spill_drain", "benchmarks.telemetry_overhead"]

if __name__ == "__main__":
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        runpy.run_module(name, run_name="__main__")
