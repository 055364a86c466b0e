"""OpenTelemetry providers, the stage naming scheme, and cheap in-process stage totals.

Each stage records per unit of work (an event for per-event stages, a batch for batched ones):
one span ``pattern_tracker.<stage>`` and bulk counter adds on
``pattern_tracker.stage.events_in|events_out|errors`` plus the histogram
``pattern_tracker.stage.duration`` (seconds), all with the attribute ``stage``. Per-event spans
are sampled (``telemetry.event_span_sample_rate``) because a span costs 15–30 µs.

With ``exporter: none`` the OTel API's no-op providers are used, so the cost is a few
attribute look-ups; the in-process totals (for the status line and run summary) are kept anyway.
Tests pass their own providers (in-memory exporter/reader).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

# Per-event counts are handed to the OTel counters once per this many calls (and on flush()).
FLUSH_EVERY = 256

STAGES: tuple[str, ...] = (
    "source",
    "validate",
    "redact",
    "batch",
    "circuit_gate",
    "retry",
    "deliver",
    "spill",
    "replay",
    "dead_letter",
    "hook",
)


class StageTotals:
    """Plain counters of one stage in this process (read by the status line and summaries)."""

    __slots__ = ("events_in", "events_out", "errors", "units", "seconds")

    def __init__(self) -> None:
        self.events_in = 0
        self.events_out = 0
        self.errors = 0
        self.units = 0
        self.seconds = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__slots__}


class Stage:
    """Instruments of one stage. ``record`` adds in bulk; ``span`` opens one span per unit of work."""

    def __init__(self, telemetry: Telemetry, name: str) -> None:
        self.name = name
        self._tel = telemetry
        self._attrs = {"stage": name}
        self._span_name = f"pattern_tracker.{name}"
        meter = telemetry.meter
        self._in = meter.create_counter("pattern_tracker.stage.events_in", unit="{event}")
        self._out = meter.create_counter("pattern_tracker.stage.events_out", unit="{event}")
        self._err = meter.create_counter("pattern_tracker.stage.errors", unit="{event}")
        self._dur = meter.create_histogram("pattern_tracker.stage.duration", unit="s")
        self.totals = StageTotals()
        self._pending_in = self._pending_out = self._pending_err = self._pending_calls = 0

    def record(self, events_in: int, events_out: int, errors: int = 0, duration_s: float | None = None) -> None:
        """Counts of one unit of work (a batch, a delivery), added to the OTel instruments at once."""
        t = self.totals
        t.events_in += events_in
        t.events_out += events_out
        t.errors += errors
        t.units += 1
        if events_in:
            self._in.add(events_in, self._attrs)
        if events_out:
            self._out.add(events_out, self._attrs)
        if errors:
            self._err.add(errors, self._attrs)
        if duration_s is not None:
            t.seconds += duration_s
            self._dur.record(duration_s, self._attrs)

    def count(self, events_in: int = 0, events_out: int = 0, errors: int = 0) -> None:
        """Per-event counts: kept locally and added to the OTel counters in bulk (see ``flush``)."""
        t = self.totals
        t.events_in += events_in
        t.events_out += events_out
        t.errors += errors
        self._pending_in += events_in
        self._pending_out += events_out
        self._pending_err += errors
        self._pending_calls += 1
        if self._pending_calls >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._pending_in:
            self._in.add(self._pending_in, self._attrs)
        if self._pending_out:
            self._out.add(self._pending_out, self._attrs)
        if self._pending_err:
            self._err.add(self._pending_err, self._attrs)
        self._pending_in = self._pending_out = self._pending_err = self._pending_calls = 0

    def observe(self, duration_s: float) -> None:
        self.totals.seconds += duration_s
        self.totals.units += 1
        self._dur.record(duration_s, self._attrs)

    @contextlib.contextmanager
    def span(self, sampled: bool = True, **attributes: Any) -> Iterator[Span | None]:
        """A span for one unit of work; ``sampled=False`` skips it (per-event stages sample)."""
        if not sampled or not self._tel.tracing:
            yield None
            return
        attrs = {"pattern_tracker.stage": self.name, **attributes}
        with self._tel.tracer.start_as_current_span(self._span_name, attributes=attrs) as span:
            yield span

    def sample(self) -> bool:
        rate = self._tel.event_span_sample_rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)

    def emit_span(self, start_s: float, end_s: float, error: str | None = None, **attributes: Any) -> None:
        """A span with explicit times (work measured elsewhere, e.g. in the hook process)."""
        if not self._tel.tracing:
            return
        attrs = {"pattern_tracker.stage": self.name, **attributes}
        span = self._tel.tracer.start_span(self._span_name, attributes=attrs, start_time=int(start_s * 1e9))
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=int(end_s * 1e9))


class Telemetry:
    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        event_span_sample_rate: float = 0.01,
        shutdown_hooks: list[Any] | None = None,
    ) -> None:
        self.tracing = tracer_provider is not None
        self.tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer("pattern_tracker")
        self.meter = (meter_provider or metrics.NoOpMeterProvider()).get_meter("pattern_tracker")
        self.event_span_sample_rate = event_span_sample_rate
        self._stages: dict[str, Stage] = {}
        self._shutdown = shutdown_hooks or []
        self.started_at = time.time()

    @classmethod
    def disabled(cls) -> Telemetry:
        return cls()

    @classmethod
    def from_config(cls, exporter: str, service_name: str, otlp_endpoint: str, sample_rate: float) -> Telemetry:
        """Providers for ``exporter`` none | console | otlp (imports the SDK only when used)."""
        if exporter == "none":
            return cls(event_span_sample_rate=sample_rate)
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": service_name})
        if exporter == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            span_exporter: Any = ConsoleSpanExporter()
            metric_exporter: Any = ConsoleMetricExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            base = otlp_endpoint.rstrip("/")
            span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces")
            metric_exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics")
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=10_000)
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        return cls(tracer_provider, meter_provider, sample_rate, [tracer_provider, meter_provider])

    def stage(self, name: str) -> Stage:
        stage = self._stages.get(name)
        if stage is None:
            if name not in STAGES:
                raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
            stage = self._stages[name] = Stage(self, name)
        return stage

    def flush(self) -> None:
        for stage in self._stages.values():
            stage.flush()

    def totals(self) -> dict[str, dict[str, float]]:
        return {name: st.totals.as_dict() for name, st in self._stages.items()}

    def shutdown(self) -> None:
        self.flush()
        for provider in self._shutdown:
            with contextlib.suppress(Exception):
                provider.shutdown()
