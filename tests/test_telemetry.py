"""Stage telemetry read through in-memory OTel exporters after a real run."""

from __future__ import annotations

import asyncio

import msgspec
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline.events import build_event
from pipeline.hook_payload import Change
from pipeline.runtime import Feed, Pipeline, RuntimeSettings
from pipeline.store import Store
from pipeline.telemetry import Telemetry
from sinks.embedded import EmbeddedSink
from sinks.lineage_store import LineageStore


def sums(reader: InMemoryMetricReader) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count  # histogram: number of observations
                    out[(metric.name, point.attributes.get("stage", ""))] = value
    return out


async def test_each_stage_emits_spans_and_counts(store: Store) -> None:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    tel = Telemetry(tp, MeterProvider(metric_readers=[reader]), event_span_sample_rate=1.0)
    pipeline = Pipeline(store, EmbeddedSink(LineageStore(store)), tel, RuntimeSettings(batch_size=10, batch_linger=0.01))
    bad = msgspec.structs.replace(
        build_event(file_path="/bad.py", code="x", version=1, parent_pattern_id=None, source="stdin", occurred_at=0),
        event_type="pattern_merged",
    )

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        await feed.changes([Change(path=f"/t/{i}.py", code="x", occurred_at=0) for i in range(25)], "watch")
        await feed.events([bad])

    summary = await pipeline.run([source], asyncio.Event())
    assert summary.delivered == 25 and summary.dead_lettered == 1

    names = [s.name for s in spans.get_finished_spans()]
    assert names.count("pattern_tracker.validate") == 25  # sampled at 1.0: one per valid event out
    assert names.count("pattern_tracker.batch") == names.count("pattern_tracker.deliver") >= 3
    deliver = [s for s in spans.get_finished_spans() if s.name == "pattern_tracker.deliver"]
    assert sum(s.attributes["pattern_tracker.batch.size"] for s in deliver) == 25

    m = sums(reader)
    assert m[("pattern_tracker.stage.events_in", "source")] == 26
    assert m[("pattern_tracker.stage.events_in", "validate")] == 26
    assert m[("pattern_tracker.stage.events_out", "validate")] == 25
    assert m[("pattern_tracker.stage.errors", "validate")] == 1
    assert m[("pattern_tracker.stage.events_out", "batch")] == 25
    assert m[("pattern_tracker.stage.events_out", "deliver")] == 25
    assert m[("pattern_tracker.stage.events_in", "dead_letter")] == 1
    assert m[("pattern_tracker.stage.duration", "deliver")] == len(deliver)


def test_disabled_telemetry_is_a_no_op() -> None:
    tel = Telemetry.disabled()
    stage = tel.stage("deliver")
    stage.record(3, 3, duration_s=0.1)
    with stage.span() as span:
        assert span is None
    stage.emit_span(0.0, 1.0)
    assert tel.totals()["deliver"]["events_out"] == 3
