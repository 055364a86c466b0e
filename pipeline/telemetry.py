"""OpenTelemetry providers, the stage naming scheme, the pipeline's instruments, and cheap
in-process stage totals.

Each stage records per unit of work (an event for per-event stages, a batch for batched ones):
one span ``pattern_tracker.<stage>`` and bulk counter adds on
``pattern_tracker.stage.events_in|events_out|errors`` plus the histogram
``pattern_tracker.stage.duration`` (seconds), all with the attribute ``stage``. Per-event spans
are sampled (``telemetry.event_span_sample_rate``) because a span costs 15–30 µs.

:class:`PipelineMetrics` holds the pipeline-wide instruments (requests, retries, circuit,
spool, dead letters, latency histograms; see the README table). Counters are added once per
batch or delivery attempt, never per event. Gauges (circuit state, spool size and age) are
observable: they read the store only when a metric reader collects.

:class:`HttpClientSpans` turns the HTTP sink's ``on_request`` hook into client spans that
follow the OTel HTTP semantic conventions, so ``sinks/http.py`` needs no OTel import.

Exporters: ``none`` (the OTel API's no-op providers: a few attribute look-ups per call; the
in-process totals for the status line and run summary are kept anyway), ``console``, ``otlp``,
and, with any of them, a Prometheus endpoint on 127.0.0.1 (``telemetry.prometheus_port`` > 0).
Tests pass their own providers (in-memory exporter/reader; ``Telemetry.views()`` for buckets).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from pattern_tracker.core.metrics import BUCKETS_MS

log = logging.getLogger("pattern_tracker.telemetry")

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

# Histogram bucket boundaries (seconds). Latencies use the store histogram's buckets
# (pipeline/core/metrics.py), so `metrics` and Prometheus give the same p50/p95/p99.
LATENCY_BUCKETS_S: tuple[float, ...] = tuple(b / 1000.0 for b in BUCKETS_MS if b != math.inf)
STAGE_DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

# Circuit state gauge values.
CIRCUIT_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3, "disabled": -1}

# Where a spill reason leaves the live path (the stage of ``pattern_tracker.stage.dropped``).
SPILL_STAGE: dict[str, str] = {
    "circuit_open": "circuit_gate",
    "retries_exhausted": "retry",
    "not_retryable": "retry",
    "backlog": "source",
    "overloaded": "source",
}

RETRY_KINDS: tuple[str, ...] = (
    "successful_without_retry", "successful_with_retry", "failed_without_retry", "failed_with_retry",
)

# Earlier delivery attempts of the events of the current delivery call (set by the runtime in
# the delivery task's own context; the HTTP client spans add it to the sink's resend count).
_EARLIER_ATTEMPTS: contextvars.ContextVar[int] = contextvars.ContextVar("pattern_tracker_earlier_attempts", default=0)


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
        self._in, self._out, self._err, self._dur = telemetry._stage_instruments()
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

    def mark(self, events: int, error: str | None = None, **attributes: Any) -> None:
        """A span for a unit of work that is a decision, not a wait (a refused or spilled batch,
        a dead letter, a replayed chunk): it starts and ends now, under the active span."""
        if not self._tel.tracing:
            return
        now = time.time_ns()
        attrs = {"pattern_tracker.stage": self.name, "pattern_tracker.model.events": events, **attributes}
        span = self._tel.tracer.start_span(self._span_name, attributes=attrs, start_time=now)
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=now)

    def emit_span(self, start_s: float, end_s: float, error: str | None = None, **attributes: Any) -> None:
        """A span with explicit times (work measured elsewhere, e.g. in the hook process)."""
        if not self._tel.tracing:
            return
        attrs = {"pattern_tracker.stage": self.name, **attributes}
        span = self._tel.tracer.start_span(self._span_name, attributes=attrs, start_time=int(start_s * 1e9))
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=int(end_s * 1e9))


class _Cached:
    """The value of ``fn`` for ``ttl`` seconds: one store read serves every callback of a collection."""

    def __init__(self, fn: Callable[[], Any], ttl: float = 0.05) -> None:
        self._fn = fn
        self._ttl = ttl
        self._at = -math.inf
        self._value: Any = None

    def __call__(self) -> Any:
        now = time.monotonic()
        if now - self._at >= self._ttl:
            self._value = self._fn()
            self._at = now
        return self._value


class PipelineMetrics:
    """The pipeline-wide instruments (names under ``pattern_tracker.``; see the README table).

    The runtime calls it once per batch or delivery attempt. ``add_counts`` takes the very
    counts the runtime adds to the store's cross-process counters (``requests.*``, ``retry.*``,
    ``spool.replayed``), so nothing is computed twice.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self._tel = telemetry
        m = telemetry.meter
        self.dropped_counter = m.create_counter(
            "pattern_tracker.stage.dropped", unit="{event}",
            description="Events that left the live path at a stage, by reason (spill reasons keep them in the spool)")
        self.requests = m.create_counter("pattern_tracker.requests", unit="{request}",
                                         description="Delivery calls to the sink")
        self.requests_succeeded = m.create_counter("pattern_tracker.requests.succeeded", unit="{request}",
                                                   description="Delivery calls the service handled")
        self.requests_failed = m.create_counter("pattern_tracker.requests.failed", unit="{request}",
                                                description="Delivery calls that failed, by error.type")
        self.retry_calls = m.create_counter("pattern_tracker.retry.calls", unit="{event}",
                                            description="Events by retry outcome kind")
        self.replayed = m.create_counter("pattern_tracker.state.spool.replayed", unit="{event}",
                                         description="Events fed back from the spool")
        self.expired = m.create_counter("pattern_tracker.state.spool.expired", unit="{event}",
                                        description="Events removed from the spool after cache_ttl")
        self.dead_letters = m.create_counter("pattern_tracker.dead_letters", unit="{event}",
                                             description="Events moved to the dead letter store")
        self.delivery_latency = m.create_histogram(
            "pattern_tracker.delivery.latency", unit="s", description="Duration of one delivery call",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S)
        self.e2e_latency = m.create_histogram(
            "pattern_tracker.end_to_end.latency", unit="s", description="occurred_at → acknowledged, per event",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S)
        self._attrs: dict[tuple[str, ...], dict[str, str]] = {}
        self._attempts: dict[str, int] = {}  # event id → delivery attempts so far (only when tracing)
        self._breaker: Any = None
        self._spool: Any = None
        self._breaker_state = _Cached(self._read_breaker)
        self._observing = False

    def _a(self, *pairs: str) -> dict[str, str]:
        """Interned attribute dicts (no allocation per call)."""
        attrs = self._attrs.get(pairs)
        if attrs is None:
            attrs = self._attrs[pairs] = dict(zip(pairs[::2], pairs[1::2]))
        return attrs

    # -- counts --------------------------------------------------------------------------

    def add_counts(self, counts: Mapping[str, int]) -> None:
        """Mirror the runtime's store counters: requests.*, retry.<kind>, spool.replayed."""
        for name, n in counts.items():
            if n <= 0:
                continue
            if name.startswith("requests."):
                kind = name[9:]
                if kind == "total":
                    self.requests.add(n)
                elif kind == "succeeded":
                    self.requests_succeeded.add(n)
                elif kind.startswith("failed."):
                    self.requests_failed.add(n, self._a("error.type", kind[7:]))
            elif name.startswith("retry."):
                kind = name[6:]
                if kind in RETRY_KINDS:
                    self.retry_calls.add(n, self._a("kind", kind))
            elif name == "spool.replayed":
                self.replayed.add(n)

    def dropped(self, stage: str, reason: str, n: int) -> None:
        if n > 0:
            self.dropped_counter.add(n, self._a("stage", stage, "reason", reason))

    def spilled(self, reason: str, n: int) -> None:
        self.dropped(SPILL_STAGE.get(reason, "spill"), reason, n)

    def expired_events(self, n: int) -> None:
        if n > 0:
            self.expired.add(n)
            self.dropped("spill", "expired", n)

    def dead_lettered(self, stage: str, error_types: Iterable[str | None]) -> None:
        by_type: dict[str, int] = {}
        for et in error_types:
            key = et or "unknown"
            by_type[key] = by_type.get(key, 0) + 1
        for et, n in by_type.items():
            self.dead_letters.add(n, self._a("stage", stage, "error.type", et))

    def delivery(self, seconds: float) -> None:
        self.delivery_latency.record(seconds)

    def end_to_end(self, seconds: Sequence[float]) -> None:
        record = self.e2e_latency.record
        for s in seconds:
            record(s)

    # -- delivery attempts (for http.request.resend_count) ------------------------------

    def call_started(self, event_ids: Iterable[str]) -> int:
        """Note one delivery attempt of these events; returns how many attempts came before it.

        Sets it for the HTTP client spans of this call (the caller runs in its own task).
        Only tracked while tracing: otherwise 0 at no cost.
        """
        if not self._tel.tracing:
            return 0
        attempts = self._attempts
        earlier = 0
        for eid in event_ids:
            n = attempts.get(eid, 0)
            attempts[eid] = n + 1
            if n > earlier:
                earlier = n
        _EARLIER_ATTEMPTS.set(earlier)
        return earlier

    def forget(self, event_ids: Iterable[str]) -> None:
        """Events that left the graph (acknowledged, dead-lettered, spilled, expired)."""
        if self._attempts:
            pop = self._attempts.pop
            for eid in event_ids:
                pop(eid, None)

    # -- observable gauges ---------------------------------------------------------------

    def observe(self, breaker: Any, spool: Any) -> None:
        """Read ``breaker`` (SharedBreaker) and ``spool`` (Spool) when a metric reader collects."""
        self._breaker, self._spool = breaker, spool
        if self._observing:
            return
        self._observing = True
        m = self._tel.meter
        m.create_observable_gauge(
            "pattern_tracker.circuit.state", [self._observe_state], unit="1",
            description="Circuit breaker state: 0 closed, 1 half_open, 2 open, 3 forced_open, -1 disabled")
        m.create_observable_counter("pattern_tracker.circuit.trips", [self._observe_trips], unit="{trip}",
                                    description="Times the circuit opened (shared breaker state)")
        m.create_observable_counter(
            "pattern_tracker.circuit.calls_not_permitted", [self._observe_not_permitted], unit="{call}",
            description="Calls refused while the circuit was open (shared breaker state)")
        m.create_observable_gauge("pattern_tracker.state.spool.size", [self._observe_spool_size], unit="{event}",
                                  description="Events in the spool")
        m.create_observable_gauge("pattern_tracker.state.spool.oldest_age", [self._observe_spool_age], unit="s",
                                  description="Age of the oldest spooled event")
        m.create_observable_counter(
            "pattern_tracker.state.spool.overflowed", [self._observe_overflow], unit="{event}",
            description="Events dropped by the spool's overflow policy since this process started, by reason")

    def _read_breaker(self) -> Any:
        return self._breaker.state() if self._breaker is not None else None

    @staticmethod
    def _safely(fn: Callable[[], list[metrics.Observation]]) -> list[metrics.Observation]:
        try:
            return fn()
        except Exception:  # noqa: BLE001 - a closed store at exit must not break the exporter
            log.debug("telemetry gauge read failed", exc_info=True)
            return []

    def _observe_state(self, _options: Any = None) -> list[metrics.Observation]:
        def read() -> list[metrics.Observation]:
            s = self._breaker_state()
            return [] if s is None else [metrics.Observation(CIRCUIT_STATES.get(s.state, -1))]
        return self._safely(read)

    def _observe_trips(self, _options: Any = None) -> list[metrics.Observation]:
        def read() -> list[metrics.Observation]:
            s = self._breaker_state()
            return [] if s is None else [metrics.Observation(s.trip_count)]
        return self._safely(read)

    def _observe_not_permitted(self, _options: Any = None) -> list[metrics.Observation]:
        def read() -> list[metrics.Observation]:
            s = self._breaker_state()
            return [] if s is None else [metrics.Observation(s.calls_not_permitted)]
        return self._safely(read)

    def _observe_spool_size(self, _options: Any = None) -> list[metrics.Observation]:
        return self._safely(lambda: [] if self._spool is None else [metrics.Observation(self._spool.size())])

    def _observe_spool_age(self, _options: Any = None) -> list[metrics.Observation]:
        def read() -> list[metrics.Observation]:
            if self._spool is None:
                return []
            oldest = self._spool.oldest_enqueued_at()
            return [metrics.Observation(0.0 if oldest is None else max(0.0, time.time() - oldest))]
        return self._safely(read)

    def _observe_overflow(self, _options: Any = None) -> list[metrics.Observation]:
        # Overflow happens inside the spool's write transaction, often in a hook process: read the
        # store's per-minute counters (every process on the data directory) since this one started.
        def read() -> list[metrics.Observation]:
            if self._spool is None:
                return []
            totals = self._spool.counters.totals(self._tel.started_at, prefix="spool.dropped.overflow_")
            return [metrics.Observation(totals.get(f"spool.dropped.{r}", 0), {"reason": r})
                    for r in ("overflow_oldest", "overflow_newest")]
        return self._safely(read)


def _error_type(status: int | None, error_class: str | None) -> str | None:
    """semconv ``error.type``: the status code for HTTP errors, else the sink's error class."""
    if error_class is None:
        return str(status) if status is not None and status >= 400 else None
    if error_class.startswith("http_") and status is not None:
        return str(status)
    return error_class


class HttpClientSpans:
    """An ``on_request`` hook for HttpSink that emits one CLIENT span per HTTP request.

    Span name = the method; attributes per the HTTP semantic conventions: ``http.request.method``,
    ``server.address``, ``server.port``, ``url.full`` (no credentials, no query),
    ``http.response.status_code``, ``error.type`` on failure, ``http.request.resend_count`` when
    > 0 (resends inside the sink plus earlier delivery attempts of the same events). The span
    is a child of the active span (the ``deliver`` span during a delivery).
    """

    def __init__(self, tracer: trace.Tracer, sink: Any, chained: Callable[..., None] | None = None) -> None:
        self._tracer = tracer
        self._chained = chained
        parts = urlsplit(getattr(sink, "root_url", "") or "")
        host = parts.netloc.rpartition("@")[2]  # never credentials (the sink strips them already)
        self._origin = f"{parts.scheme}://{host}" if parts.scheme else ""
        port = getattr(sink, "server_port", None)
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        self._base: dict[str, Any] = {"server.address": getattr(sink, "server_address", None) or parts.hostname or "",
                                      "server.port": int(port)}

    def __call__(self, method: str, url_path: str, status: int | None, duration_s: float,
                 error_class: str | None, resend_count: int) -> None:
        try:
            end = time.time_ns()
            attrs: dict[str, Any] = {"http.request.method": method, **self._base, "url.full": self._origin + url_path}
            if status is not None:
                attrs["http.response.status_code"] = status
            resend = resend_count + _EARLIER_ATTEMPTS.get()
            if resend > 0:
                attrs["http.request.resend_count"] = resend
            err = _error_type(status, error_class)
            if err is not None:
                attrs["error.type"] = err
            span = self._tracer.start_span(method, kind=SpanKind.CLIENT, attributes=attrs,
                                           start_time=end - int(max(0.0, duration_s) * 1e9))
            if err is not None:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=end)
        finally:
            if self._chained is not None:
                self._chained(method, url_path, status, duration_s, error_class, resend_count)


class Telemetry:
    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        event_span_sample_rate: float = 0.01,
        shutdown_hooks: list[Any] | None = None,
    ) -> None:
        self.tracing = tracer_provider is not None
        self.metering = meter_provider is not None
        self.tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer("pattern_tracker")
        self.meter = (meter_provider or metrics.NoOpMeterProvider()).get_meter("pattern_tracker")
        self.event_span_sample_rate = event_span_sample_rate
        self._stages: dict[str, Stage] = {}
        self._shutdown = shutdown_hooks or []
        self._stage_inst: tuple[Any, Any, Any, Any] | None = None
        self._pipeline: PipelineMetrics | None = None
        self.started_at = time.time()
        # (host, port) of the Prometheus endpoint when one is serving.
        self.prometheus_address: tuple[str, int] | None = None

    @classmethod
    def disabled(cls) -> Telemetry:
        return cls()

    @staticmethod
    def views() -> list[Any]:
        """Explicit bucket boundaries (seconds) for the histograms, so p50/p95/p99 are readable."""
        from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

        latency = ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_S)
        return [
            View(instrument_name="pattern_tracker.delivery.latency", aggregation=latency),
            View(instrument_name="pattern_tracker.end_to_end.latency", aggregation=latency),
            View(instrument_name="pattern_tracker.stage.duration",
                 aggregation=ExplicitBucketHistogramAggregation(STAGE_DURATION_BUCKETS_S)),
        ]

    @classmethod
    def from_config(
        cls, exporter: str, service_name: str, otlp_endpoint: str, sample_rate: float, prometheus_port: int = 0
    ) -> Telemetry:
        """Providers for ``exporter`` none | console | otlp, plus a Prometheus endpoint on
        127.0.0.1:``prometheus_port`` when > 0 (with any exporter). The SDK is imported only
        when used: ``none`` without Prometheus gives the no-op providers."""
        if exporter == "none" and prometheus_port <= 0:
            return cls(event_span_sample_rate=sample_rate)
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource

        resource = Resource.create({"service.name": service_name})
        readers: list[Any] = []
        hooks: list[Any] = []
        tracer_provider: Any = None
        if exporter != "none":
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

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
            readers.append(PeriodicExportingMetricReader(metric_exporter, export_interval_millis=10_000))
            hooks.append(tracer_provider)
        prometheus = None
        if prometheus_port > 0:
            prometheus = _Prometheus(prometheus_port)
            readers.append(prometheus.reader)
        meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=cls.views())
        hooks.append(meter_provider)
        if prometheus is not None:
            hooks.append(prometheus)  # after the provider: the server stops last
        tel = cls(tracer_provider, meter_provider, sample_rate, hooks)
        if prometheus is not None:
            tel.prometheus_address = prometheus.address
        return tel

    def _stage_instruments(self) -> tuple[Any, Any, Any, Any]:
        if self._stage_inst is None:
            m = self.meter
            self._stage_inst = (
                m.create_counter("pattern_tracker.stage.events_in", unit="{event}", description="Events entering a stage"),
                m.create_counter("pattern_tracker.stage.events_out", unit="{event}", description="Events leaving a stage"),
                m.create_counter("pattern_tracker.stage.errors", unit="{event}", description="Events that failed in a stage"),
                m.create_histogram("pattern_tracker.stage.duration", unit="s", description="Time per unit of work",
                                   explicit_bucket_boundaries_advisory=STAGE_DURATION_BUCKETS_S),
            )
        return self._stage_inst

    def stage(self, name: str) -> Stage:
        stage = self._stages.get(name)
        if stage is None:
            if name not in STAGES:
                raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
            stage = self._stages[name] = Stage(self, name)
        return stage

    @property
    def pipeline(self) -> PipelineMetrics:
        """The pipeline-wide instruments (created on first use)."""
        if self._pipeline is None:
            self._pipeline = PipelineMetrics(self)
        return self._pipeline

    def instrument_sink(self, sink: Any) -> None:
        """Give a sink with an ``on_request`` hook (HttpSink) HTTP client spans. Idempotent; an
        existing hook is kept and still called."""
        if not self.tracing or not hasattr(sink, "on_request"):
            return
        current = sink.on_request
        if isinstance(current, HttpClientSpans):
            return
        sink.on_request = HttpClientSpans(self.tracer, sink, current)

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


class _Prometheus:
    """A PrometheusMetricReader on its own registry, served by prometheus_client on 127.0.0.1."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        self.registry = CollectorRegistry(auto_describe=True)
        self.reader = PrometheusMetricReader(registry=self.registry)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.address = (host, int(self._server.server_port))
        log.info("Prometheus metrics on http://%s:%d/metrics", *self.address)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
