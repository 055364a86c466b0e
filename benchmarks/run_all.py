"""``make bench``: run every benchmark in turn at its full size (each writes benchmarks/results/NAME.md,
the new ones also NAME.json and NAME.png), then draw the plots.

    python -m benchmarks.run_all [NAME ...]     # e.g. `replay_throughput outage_recovery`; default all

A failing benchmark is reported and the others still run; the exit code says whether any failed.
"""

from __future__ import annotations

import runpy
import sys
import traceback

BENCHMARKS = ["benchmarks.hook_latency", "benchmarks.spill_drain", "benchmarks.telemetry_overhead",
              "benchmarks.replay_throughput", "benchmarks.outage_recovery"]

if __name__ == "__main__":
    wanted = [f"benchmarks.{n.removeprefix('benchmarks.')}" for n in sys.argv[1:]] or BENCHMARKS
    failed = []
    for name in wanted:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        try:
            runpy.run_module(name, run_name="__main__")
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - report, run the rest
            if isinstance(exc, SystemExit) and not exc.code:
                continue
            traceback.print_exc()
            failed.append(name)
    from benchmarks.plot import plot_all

    plot_all()
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)
