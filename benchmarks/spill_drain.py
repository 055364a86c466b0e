"""Spill and drain throughput: events/s written to the spool during an outage, events/s drained
after it, and the ratio drain / live delivery — all measured in one run, side by side.

    python -m benchmarks.spill_drain [--events N]

Live: the full pipeline delivers N events to `serve` (another process) as they are produced.
Spill: the same N events while nothing listens (connection refused): the circuit opens and
everything stays in the spool. Drain: `serve` comes up and the spool is delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from pattern_tracker.operators.backoff import ExponentialBackoff
from pattern_tracker.operators.breaker import BreakerSettings
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.runtime import Pipeline, RuntimeSettings
from pattern_tracker.state.spool import Spool, SpoolLimits
from pattern_tracker.core.store import Store
from pattern_tracker.telemetry import Telemetry
from pattern_tracker.sinks.http import HttpSink

from benchmarks._common import free_port, machine, producer, serve, write_result



def pipeline_for(data: Path, url: str, n: int) -> tuple[Pipeline, Store]:
    store = Store.open(data)
    settings = RuntimeSettings(batch_size=100, batch_linger=0.02, max_in_flight_batches=4, max_concurrency=4)
    breaker = SharedBreaker(store, BreakerSettings(failure_threshold=5, recovery_timeout=60))
    p = Pipeline(store, HttpSink(url), Telemetry.disabled(), settings,
                 spool=Spool(store, SpoolLimits(bound=n * 2, ttl=86400)), breaker=breaker,
                 policy=ExponentialBackoff(max_attempts=2, base_delay=0.01, max_delay=0.05))
    return p, store


async def timed(pipeline: Pipeline, sources, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    summary = await pipeline.run(sources, asyncio.Event(), **kw)
    return time.perf_counter() - t0, summary


async def main(n: int) -> str:
    root = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    try:
        with serve(root / "svc-live") as url:
            p, store = pipeline_for(root / "live", url, n)
            live_s, live = await timed(p, [producer(n)])
            store.close()
        assert live.delivered == n, live

        p, store = pipeline_for(root / "outage", f"http://127.0.0.1:{free_port()}", n)
        spill_s, spilled = await timed(p, [producer(n)])
        store.close()
        assert spilled.left_in_spool == n, spilled

        with serve(root / "svc-drain") as url:
            p, store = pipeline_for(root / "outage", url, n)
            p.breaker.reset()  # the operator's `circuit reset` once the service is back
            drain_s, drained = await timed(p, [], drain=True, until_empty=True)
            store.close()
        assert drained.delivered == n and drained.left_in_spool == 0, drained
    finally:
        shutil.rmtree(root, ignore_errors=True)

    live_rate, spill_rate, drain_rate = n / live_s, n / spill_s, n / drain_s
    return "\n".join([
        f"### Spill and drain ({n} events of ~700 B, 500 files, batch 100, 4 concurrent requests, `serve` in another process)",
        "",
        "| phase | seconds | events/s |",
        "|---|---:|---:|",
        f"| live delivery (service up) | {live_s:.2f} | {live_rate:,.0f} |",
        f"| spill during an outage (connection refused, circuit open) | {spill_s:.2f} | {spill_rate:,.0f} |",
        f"| drain after recovery | {drain_s:.2f} | {drain_rate:,.0f} |",
        "",
        f"Ratio drain / live: **{drain_rate / live_rate:.2f}**. Machine: {machine()}.",
    ])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    table = asyncio.run(main(ap.parse_args().events))
    print(table)
    print(f"written to {write_result('spill_drain', table)}")
