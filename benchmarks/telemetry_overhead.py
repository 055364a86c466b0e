"""Telemetry overhead: throughput of the full pipeline with the OTel SDK active versus
telemetry off, measured in one run, alternating rounds (the machine is shared and noisy).

    python -m benchmarks.telemetry_overhead [--events N] [--rounds R] [--sample-rate F]

Each run feeds N events (~700 B, 500 files) through spool → validate → batch → circuit_gate →
retry(deliver) → settle, into the null sink (the pipeline's own cost: the worst case for the
ratio) and into the embedded lineage store (what `run` does without an API URL).

* off: ``Telemetry.disabled()`` (exporter none, no Prometheus: the OTel API's no-op providers);
* on: SDK TracerProvider with a BatchSpanProcessor into an exporter that discards, and an SDK
  MeterProvider (with the histogram views) read by an in-memory reader collected at the end —
  every instrument, the observable gauges and the per-batch spans are live; per-event spans
  are sampled at ``--sample-rate`` (the configured default, 0.01).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from pattern_tracker.runtime import Pipeline, RuntimeSettings
from pattern_tracker.state.spool import Spool, SpoolLimits
from pattern_tracker.core.store import MIB, Store
from pattern_tracker.telemetry import Telemetry
from pattern_tracker.sinks.embedded import EmbeddedSink
from pattern_tracker.sinks.lineage_store import LineageStore
from pattern_tracker.sinks.null import NullSink

from benchmarks._common import RESULTS, machine, producer, write_result



class _Discard(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def telemetry(on: bool, sample_rate: float) -> tuple[Telemetry, Any]:
    if not on:
        return Telemetry.disabled(), None
    exporter = _Discard()
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader], views=Telemetry.views())
    return Telemetry(tp, mp, sample_rate, [tp, mp]), (exporter, reader)


async def one_run(root: Path, sink_kind: str, on: bool, n: int, sample_rate: float) -> tuple[float, int]:
    """Seconds for n events, and the spans exported (0 when off)."""
    data = Path(tempfile.mkdtemp(dir=root))
    store = Store.open(data, map_size=1024 * MIB)
    tel, parts = telemetry(on, sample_rate)
    sink: Any = NullSink() if sink_kind == "null" else EmbeddedSink(LineageStore(store))
    settings = RuntimeSettings(batch_size=100, batch_linger=0.02, max_in_flight_batches=4, max_concurrency=4)
    p = Pipeline(store, sink, tel, settings, spool=Spool(store, SpoolLimits(bound=n * 2, ttl=86400)))
    try:
        t0 = time.perf_counter()
        summary = await p.run([producer(n)], asyncio.Event())
        seconds = time.perf_counter() - t0
        assert summary.delivered + summary.already_existed >= n and summary.left_in_spool == 0, summary
        spans = 0
        if parts is not None:
            exporter, reader = parts
            reader.get_metrics_data()  # one collection (gauges read the store)
            tel.shutdown()  # flushes the span processor
            spans = exporter.spans
    finally:
        store.close()
        shutil.rmtree(data, ignore_errors=True)
    return seconds, spans


async def main(n: int, rounds: int, sample_rate: float) -> tuple[str, dict[str, float]]:
    root = Path(tempfile.mkdtemp(prefix="pt-bench-tel-"))
    results: dict[tuple[str, bool], list[float]] = {}
    spans: dict[str, int] = {}
    try:
        await one_run(root, "null", True, min(n, 2000), sample_rate)  # warm-up (imports, JIT-free caches)
        for r in range(rounds):
            for sink_kind in ("null", "embedded"):
                # alternate the order per round so drift does not favour one mode
                for on in ((False, True) if r % 2 == 0 else (True, False)):
                    seconds, exported = await one_run(root, sink_kind, on, n, sample_rate)
                    results.setdefault((sink_kind, on), []).append(n / seconds)
                    if on:
                        spans[sink_kind] = exported
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = []
    ratios: dict[str, float] = {}
    for sink_kind, label in (("null", "null sink"), ("embedded", "embedded lineage store")):
        off = statistics.median(results[(sink_kind, False)])
        on = statistics.median(results[(sink_kind, True)])
        ratios[sink_kind] = on / off
        rows.append(f"| {label} | {off:,.0f} | {on:,.0f} | **{on / off:.2f}** | {spans[sink_kind]:,} |")
    table = "\n".join([
        f"### Telemetry overhead ({n} events of ~700 B, 500 files, batch 100, 4 concurrent; median of {rounds} "
        f"alternating rounds; per-event span sample rate {sample_rate:g})",
        "",
        "| sink | events/s, telemetry off | events/s, telemetry on | ratio on/off (target ≥ 0.8) | spans per run |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        "Off: exporter none, no Prometheus (no-op providers). On: OTel SDK tracer + meter providers, spans to a "
        f"batch processor with a discarding exporter, metrics to an in-memory reader. Machine: {machine()}.",
    ])
    return table, ratios


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sample-rate", type=float, default=0.01)
    args = ap.parse_args()
    table, ratios = asyncio.run(main(args.events, args.rounds, args.sample_rate))
    print(table)
    print("ratio on/off: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print(f"written to {write_result('telemetry_overhead', table)}")
    (RESULTS / "telemetry_overhead.json").write_text(json.dumps(
        {"events": args.events, "rounds": args.rounds, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "machine": machine(), "ratio_on_off": ratios}, indent=2) + "\n")
