"""``make bench``: run every benchmark in turn at its full size (each writes benchmarks/results/NAME.md,
the new ones also NAME.json and NAME.png), then draw the plots and gather every table, with when
and where it was measured, into benchmarks/results/SUMMARY.md, issue 14's targets beside their
measured figures on top (benchmarks/results/targets.md, ``benchmarks.targets``), and regenerate
the figures of docs/benchmarks.md from them (``benchmarks.docs_page``).

    python -m benchmarks.run_all [NAME ...]     # e.g. `replay_throughput outage_recovery`; default all
    PT_BENCH_BEFORE=OLD/bin/pattern-tracker make bench    # also compare with an earlier install

A failing benchmark is reported and the others still run; the exit code says whether any failed.
"""

from __future__ import annotations

import os
import re
import runpy
import sys
import time
import traceback

from benchmarks import docs_page, targets
from benchmarks._common import BIN, RESULTS, machine, write_result

BENCHMARKS = ["benchmarks.hook_latency", "benchmarks.spill_drain", "benchmarks.telemetry_overhead",
              "benchmarks.replay_throughput", "benchmarks.outage_recovery", "benchmarks.ui_listing",
              "benchmarks.serve_stores", "benchmarks.serve_ingest"]


def write_summary(started: str, load_before: float, failed: list[str]) -> None:
    """One page of every latest table; each keeps the date it was measured (a subset run leaves
    the other tables as they were, and says so)."""
    parts = [f"# Benchmark results\n\nLast `benchmarks.run_all` started {started} on {machine()}; load average "
             f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after."
             + (f" Failed: {', '.join(failed)}." if failed else ""), targets.table(started)]
    for name in BENCHMARKS:
        path = RESULTS / f"{name.removeprefix('benchmarks.')}.md"
        if not path.exists():
            continue
        text = path.read_text()
        stamp = re.match(r"<!-- measured (.*?) -->\n", text)
        body = text[stamp.end():] if stamp else text
        parts.append(body.strip() + (f"\n\n_Measured {stamp.group(1)}._" if stamp else ""))
    (RESULTS / "SUMMARY.md").write_text("\n\n".join(parts) + "\n")
    print(f"summary written to {RESULTS / 'SUMMARY.md'}")


if __name__ == "__main__":
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
    wanted = [f"benchmarks.{n.removeprefix('benchmarks.')}" for n in sys.argv[1:]] or list(BENCHMARKS)
    # PT_BENCH_BEFORE=OLD/bin/pattern-tracker: an install of an earlier commit, compared with this one
    # (interleaved: hook, null sink, serve) for issue 14's "the hook does not regress".
    before = os.environ.get("PT_BENCH_BEFORE")
    if before:
        wanted.append("benchmarks.compare_installs")
    failed = []
    for name in wanted:
        print(f"== {name}", flush=True)
        sys.argv = [name, before, str(BIN)] if name == "benchmarks.compare_installs" and before else [name]
        try:
            runpy.run_module(name, run_name="__main__")
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - report, run the rest
            if isinstance(exc, SystemExit) and not exc.code:
                continue
            traceback.print_exc()
            failed.append(name)
    from benchmarks.plot import plot_all

    plot_all()
    print(f"written to {write_result('targets', targets.table(started))}")
    write_summary(started, load_before, failed)
    print(f"{docs_page.PAGE}: {docs_page.regenerate(started)} generated block(s) rewritten")
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)
