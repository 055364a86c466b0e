"""Stage telemetry read through in-memory OTel exporters after a real run."""

from __future__ import annotations

import asyncio

import msgspec
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pattern_tracker.model.events import build_event
from pattern_tracker.core.capture import Change
from pattern_tracker.runtime import Feed, Pipeline, RuntimeSettings
from pattern_tracker.core.store import Store
from pattern_tracker.telemetry import Telemetry
from pattern_tracker.sinks.embedded import EmbeddedSink
from pattern_tracker.sinks.lineage_store import LineageStore


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

    # Nothing is sent twice: replay never picks up an event that is in flight or just settled.
    assert summary.replayed == 0 and summary.already_existed == 0
    passes = 25
    names = [s.name for s in spans.get_finished_spans()]
    # The graph carries chunks: one validate span per chunk that had valid events.
    validated = [s for s in spans.get_finished_spans() if s.name == "pattern_tracker.validate"]
    assert len(validated) >= 1 and sum(s.attributes["pattern_tracker.model.events"] for s in validated) == passes
    assert names.count("pattern_tracker.batch") == names.count("pattern_tracker.deliver") >= 3
    deliver = [s for s in spans.get_finished_spans() if s.name == "pattern_tracker.deliver"]
    assert sum(s.attributes["pattern_tracker.batch.size"] for s in deliver) == passes

    m = sums(reader)
    assert m[("pattern_tracker.stage.events_in", "source")] == 26
    assert m[("pattern_tracker.stage.events_in", "validate")] == 26
    assert m[("pattern_tracker.stage.events_out", "validate")] == passes
    assert m[("pattern_tracker.stage.errors", "validate")] == 1
    assert m[("pattern_tracker.stage.events_out", "batch")] == passes
    assert m[("pattern_tracker.stage.events_out", "deliver")] == passes
    assert m[("pattern_tracker.stage.events_in", "dead_letter")] == 1
    assert m[("pattern_tracker.stage.duration", "deliver")] == len(deliver)


def test_disabled_telemetry_is_a_no_op() -> None:
    tel = Telemetry.disabled()
    stage = tel.stage("deliver")
    stage.count(3, 3)
    stage.observe(0.1)
    with stage.span() as span:
        assert span is None
    stage.emit_span(0.0, 1.0)
    assert tel.totals()["deliver"]["events_out"] == 3


# ---------------------------------------------------------------------------------------
# A run with retries, a circuit trip, a spill and a replay, against `serve` over real HTTP.

import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from aiohttp import web  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from pattern_tracker.operators.backoff import ExponentialBackoff  # noqa: E402
from pattern_tracker.operators.breaker import BreakerSettings  # noqa: E402
from pattern_tracker.state.circuit_store import SharedBreaker  # noqa: E402
from pattern_tracker.state.spool import Spool, SpoolLimits  # noqa: E402
from pattern_tracker.core.store import MIB  # noqa: E402
from pattern_tracker.telemetry import LATENCY_BUCKETS_S, HttpClientSpans  # noqa: E402
from pattern_tracker.sinks.http import HttpSink  # noqa: E402
from tests.clitools import async_wait_for, free_port  # noqa: E402
from tests.servetools import Faults, unavailable  # noqa: E402

BATCH_PATH = "/api/pattern-traceability/lineage/track/batch"


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """metric name → its data points (one collection)."""
    out: dict[str, list[Any]] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def value(pts: dict[str, list[Any]], name: str, **attrs: str) -> float:
    """Sum of the points of ``name`` whose attributes include ``attrs`` (histograms: count)."""
    total = 0.0
    for p in pts.get(name, []):
        if all(p.attributes.get(k) == v for k, v in attrs.items()):
            total += p.value if hasattr(p, "value") else p.count
    return total


def local_telemetry(sample_rate: float = 1.0) -> tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    tel = Telemetry(tp, MeterProvider(metric_readers=[reader], views=Telemetry.views()), event_span_sample_rate=sample_rate)
    return tel, spans, reader


async def test_outage_run_emits_spans_metrics_and_gauges(tmp_path, serve_factory, lineage) -> None:
    faults = Faults()
    script: list[str] = ["503"]  # the first POST fails once: its batch succeeds on the re-attempt
    outage = {"on": False}

    async def mode(request: web.Request) -> web.StreamResponse | None:
        if outage["on"] or (script and script.pop(0) == "503"):
            return await unavailable(request)
        return None

    faults.mode = mode
    url = await serve_factory(fault_hook=faults)
    port = int(url.rsplit(":", 1)[1])
    tel, spans, reader = local_telemetry()
    store = Store.open(tmp_path / "client", map_size=64 * MIB)
    pipeline = Pipeline(
        store,
        HttpSink(url, total_timeout=5),
        tel,
        RuntimeSettings(batch_size=5, batch_linger=0.01, max_concurrency=1, replay_poll=0.1),
        spool=Spool(store, SpoolLimits(bound=10_000)),
        breaker=SharedBreaker(store, BreakerSettings(failure_threshold=2, recovery_timeout=0.5, half_open_attempts=1)),
        policy=ExponentialBackoff(max_attempts=2, base_delay=0.02, max_delay=0.05, jitter_factor=0.0),
    )
    bad = msgspec.structs.replace(
        build_event(file_path="/bad.py", code="x", version=1, parent_pattern_id=None, source="stdin", occurred_at=1.0),
        event_type="pattern_merged",
    )
    during: dict[str, list[Any]] = {}

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        # 1. five events: 503, then delivered on the re-attempt; one invalid event.
        await feed.changes([Change(path=f"/a/{i}.py", code="x", occurred_at=time.time()) for i in range(5)], "watch")
        await feed.events([bad])
        await async_wait_for(lambda: pipeline.summary.delivered >= 5, timeout=15, what="5 delivered")
        # 2. an outage: the first batch fails twice (the circuit trips), the queued ones are refused.
        outage["on"] = True
        await feed.changes([Change(path=f"/b/{i}.py", code="x", occurred_at=time.time()) for i in range(20)], "watch")
        await async_wait_for(lambda: pipeline.summary.spilled >= 20, timeout=15, what="20 spilled")
        # Gauges while the circuit is open and the spool holds the backlog: read once the spool
        # gauge shows the spilled batch (its write is committed), not after a guessed delay.
        during.update(await async_wait_for(
            lambda: (pts := points(reader)) and value(pts, "pattern_tracker.state.spool.size") >= 20
            and value(pts, "pattern_tracker.state.spool.oldest_age") > 0 and pts,
            timeout=15, what="the spool gauge showing the backlog"))
        outage["on"] = False  # 3. recovery: replay delivers the spool (the run ends when open)
        await async_wait_for(lambda: pipeline.summary.delivered + pipeline.summary.already_existed >= 25, timeout=15,
                             what="25 delivered")

    try:
        summary = await asyncio.wait_for(pipeline.run([source], asyncio.Event()), timeout=30)
        after = points(reader)
    finally:
        store.close()
    assert summary.delivered + summary.already_existed >= 25 and summary.left_in_spool == 0
    assert summary.dead_lettered == 1 and summary.retried >= 5 and summary.spilled >= 20 and summary.replayed >= 20
    assert lineage.count() == 25

    # -- gauges --------------------------------------------------------------------------
    assert value(during, "pattern_tracker.circuit.state") in (1, 2)  # open (or half-open: a trial)
    assert value(during, "pattern_tracker.state.spool.size") >= 20
    assert value(during, "pattern_tracker.state.spool.oldest_age") > 0
    assert value(after, "pattern_tracker.circuit.state") == 0  # closed again
    assert value(after, "pattern_tracker.circuit.trips") >= 1
    assert value(after, "pattern_tracker.circuit.calls_not_permitted") >= 1
    assert value(after, "pattern_tracker.state.spool.size") == 0 and value(after, "pattern_tracker.state.spool.oldest_age") == 0

    # -- metrics -------------------------------------------------------------------------
    m = after
    st = lambda name, stage: value(m, f"pattern_tracker.stage.{name}", stage=stage)  # noqa: E731
    assert st("events_in", "validate") == st("events_in", "source") == 26 + summary.replayed
    assert st("errors", "validate") == 1
    assert st("events_out", "deliver") == summary.delivered + summary.already_existed
    assert st("events_in", "retry") == summary.retried
    assert st("events_in", "circuit_gate") == st("errors", "circuit_gate") >= 5  # refused batches
    assert st("events_in", "spill") == summary.spilled
    assert st("events_in", "replay") == summary.replayed == value(m, "pattern_tracker.state.spool.replayed")
    assert st("events_in", "dead_letter") == 1
    assert value(m, "pattern_tracker.dead_letters", stage="validate", **{"error.type": "validation"}) == 1
    dropped = "pattern_tracker.stage.dropped"
    assert value(m, dropped, stage="validate", reason="validation") == 1
    assert value(m, dropped, stage="retry", reason="retries_exhausted") >= 5
    assert value(m, dropped, stage="circuit_gate", reason="circuit_open") >= 5
    spill_reasons = ("circuit_open", "retries_exhausted", "not_retryable", "backlog", "overloaded")
    assert sum(value(m, dropped, reason=r) for r in spill_reasons) == summary.spilled
    requests = value(m, "pattern_tracker.requests")
    failed = value(m, "pattern_tracker.requests.failed", **{"error.type": "http_503"})
    assert failed >= 3 and requests == value(m, "pattern_tracker.requests.succeeded") + value(m, "pattern_tracker.requests.failed")
    calls = lambda kind: value(m, "pattern_tracker.retry.calls", kind=kind)  # noqa: E731
    assert calls("successful_with_retry") >= 5 and calls("failed_with_retry") >= 5
    assert calls("successful_without_retry") >= 1
    # latency histograms: one delivery observation per call, one end-to-end per acknowledged event
    (latency,) = m["pattern_tracker.delivery.latency"]
    assert latency.count == requests and tuple(latency.explicit_bounds) == LATENCY_BUCKETS_S
    assert value(m, "pattern_tracker.end_to_end.latency") == st("events_out", "deliver")

    # -- spans ---------------------------------------------------------------------------
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    for stage in ("validate", "batch", "circuit_gate", "retry", "deliver", "spill", "replay", "dead_letter"):
        assert f"pattern_tracker.{stage}" in names, stage
    deliver = {s.context.span_id: s for s in finished if s.name == "pattern_tracker.deliver"}
    assert len(deliver) == requests
    http = [s for s in finished if s.name == "POST"]
    assert len(http) == len(faults.posts) == requests  # one batch request per delivery call here
    for s in http:
        a = s.attributes
        assert s.kind == SpanKind.CLIENT
        assert a["http.request.method"] == "POST" and a["server.address"] == "127.0.0.1" and a["server.port"] == port
        assert a["url.full"] == url + BATCH_PATH
        assert s.parent is not None and s.parent.span_id in deliver  # a child of its deliver span
    failed_spans = [s for s in http if s.attributes["http.response.status_code"] == 503]
    assert len(failed_spans) == failed
    assert all(s.attributes["error.type"] == "503" and s.status.status_code == StatusCode.ERROR for s in failed_spans)
    ok = [s for s in http if s.attributes["http.response.status_code"] == 200]
    assert ok and all("error.type" not in s.attributes for s in ok)
    # the re-attempt of the first batch: a resend, under a retry span
    resent_ok = [s for s in ok if s.attributes.get("http.request.resend_count", 0) >= 1]
    assert resent_ok
    retry_ids = {s.context.span_id for s in finished if s.name == "pattern_tracker.retry"}
    assert deliver[resent_ok[0].parent.span_id].parent.span_id in retry_ids
    assert http[0].attributes.get("http.request.resend_count") is None  # a first attempt has none


def test_http_client_span_url_has_no_credentials_or_query() -> None:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    sink = HttpSink("https://user:secret@lineage.example:8443/svc?token=abc")
    called: list[tuple[Any, ...]] = []
    hook = HttpClientSpans(tp.get_tracer("t"), sink, lambda *a: called.append(a))
    hook("GET", "/svc/api/pattern-traceability/health", None, 0.02, "timeout", 0)
    (span,) = spans.get_finished_spans()
    assert span.name == "GET" and span.kind == SpanKind.CLIENT
    assert span.attributes["url.full"] == "https://lineage.example:8443/svc/api/pattern-traceability/health"
    assert span.attributes["server.address"] == "lineage.example" and span.attributes["server.port"] == 8443
    assert span.attributes["error.type"] == "timeout" and "http.response.status_code" not in span.attributes
    assert span.end_time - span.start_time == pytest.approx(0.02e9, rel=0.01)
    assert called == [("GET", "/svc/api/pattern-traceability/health", None, 0.02, "timeout", 0)]  # chained hook kept


def test_instrument_sink_wraps_once_and_only_when_tracing() -> None:
    sink = HttpSink("http://127.0.0.1:9")
    Telemetry.disabled().instrument_sink(sink)
    assert sink.on_request is None
    tel, _, _ = local_telemetry()
    tel.instrument_sink(sink)
    first = sink.on_request
    tel.instrument_sink(sink)
    assert isinstance(first, HttpClientSpans) and sink.on_request is first


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


async def test_prometheus_endpoint_with_exporter_none(store: Store) -> None:
    port = free_port()
    tel = Telemetry.from_config("none", "pattern-tracker-test", "http://localhost:4318", 0.0, prometheus_port=port)
    assert tel.prometheus_address == ("127.0.0.1", port) and tel.metering and not tel.tracing
    try:
        pipeline = Pipeline(store, EmbeddedSink(LineageStore(store)), tel, RuntimeSettings(batch_size=10, batch_linger=0.01))

        async def source(feed: Feed, stop: asyncio.Event) -> None:
            await feed.changes([Change(path=f"/p/{i}.py", code="x", occurred_at=time.time()) for i in range(12)], "watch")

        summary = await pipeline.run([source], asyncio.Event())
        assert summary.delivered == 12
        body = await asyncio.to_thread(_scrape, port)
    finally:
        tel.shutdown()
    lines = body.splitlines()

    def sample(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    assert sample('pattern_tracker_stage_events_out_total{otel_scope_name="pattern_tracker",otel_scope_schema_url="",'
                  'otel_scope_version="",stage="deliver"}') == 12 + summary.already_existed
    assert sample("pattern_tracker_requests_total") >= 2
    assert sample('pattern_tracker_retry_calls_total{kind="successful_without_retry"') == 12 + summary.already_existed
    assert sample("pattern_tracker_circuit_state") == 0 and sample("pattern_tracker_state_spool_size{") == 0
    assert sample("pattern_tracker_delivery_latency_seconds_count") >= 2
    assert sample("pattern_tracker_end_to_end_latency_seconds_count") == 12 + summary.already_existed
    assert 'le="0.001"' in body  # explicit buckets (seconds)
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(_scrape, port)  # shut down with the telemetry


def test_exporter_none_without_prometheus_is_no_op() -> None:
    tel = Telemetry.from_config("none", "pattern-tracker", "http://localhost:4318", 0.5)
    assert not tel.tracing and not tel.metering and tel.prometheus_address is None
    tel.pipeline.add_counts({"requests.total": 1, "retry.successful_with_retry": 2})
    tel.pipeline.end_to_end([0.1, 0.2])
    assert tel.pipeline.call_started(["a"]) == 0
