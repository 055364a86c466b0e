"""OpenTelemetry for the pipeline: ``Telemetry`` ties the providers, the stages and the
pipeline-wide instruments together; every other module reaches telemetry through it.

The pieces, one module each:

* ``stages``: the stage naming scheme (``pattern_tracker.<stage>`` spans, the
  ``pattern_tracker.stage.*`` instruments with the attribute ``stage``) and ``Stage``, the cheap
  per-stage recording helpers (in-process totals, observed when a reader collects; sampled
  per-event spans).
* ``pipeline_metrics``: ``PipelineMetrics``, the pipeline-wide instruments (requests, retries,
  circuit, spool, dead letters, latency histograms; see docs/telemetry.md), added once per batch
  or delivery attempt; gauges read the store only when a metric reader collects.
* ``http_spans``: ``HttpClientSpans``, the HTTP sink's ``on_request`` hook as client spans that
  follow the OTel HTTP semantic conventions, so ``sinks/http.py`` needs no OTel import.
* ``providers``: the SDK providers and exporters (``console``, ``otlp``, a Prometheus endpoint on
  127.0.0.1 when ``telemetry.prometheus_port`` > 0), imported only when configured.

Exporter ``none`` (without Prometheus) keeps the OTel API's no-op providers: a few attribute
look-ups per call; the in-process totals for the status line and run summary are kept anyway.
Tests pass their own providers (in-memory exporter/reader; ``Telemetry.views()`` for buckets).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from opentelemetry import metrics, trace

from pattern_tracker.telemetry import providers
from pattern_tracker.telemetry.http_spans import HttpClientSpans
from pattern_tracker.telemetry.pipeline_metrics import (
    CIRCUIT_STATES,
    LATENCY_BUCKETS_S,
    RETRY_KINDS,
    SPILL_STAGE,
    PipelineMetrics,
)
from pattern_tracker.telemetry.stages import (
    STAGE_DURATION_BUCKETS_S,
    STAGES,
    Stage,
    StageTotals,
    create_stage_instruments,
)

__all__ = [
    "CIRCUIT_STATES", "LATENCY_BUCKETS_S", "RETRY_KINDS", "SPILL_STAGE", "STAGES",
    "STAGE_DURATION_BUCKETS_S", "HttpClientSpans", "PipelineMetrics", "Stage", "StageTotals", "Telemetry",
]


class Telemetry:
    """The pipeline's telemetry: a tracer and a meter (the OTel API's no-op ones unless providers
    are given), the stages (``stage``), the pipeline-wide instruments (``pipeline``), and
    ``shutdown``. Instrumentation goes in through hooks (``instrument_sink``), so the sinks
    never import OTel."""

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
        self._stage_duration: Any = None
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
        return providers.views()

    @classmethod
    def from_config(
        cls, exporter: str, service_name: str, otlp_endpoint: str, sample_rate: float, prometheus_port: int = 0
    ) -> Telemetry:
        """Providers for ``exporter`` none | console | otlp, plus a Prometheus endpoint on
        127.0.0.1:``prometheus_port`` when > 0 (with any exporter). The SDK is imported only
        when used: ``none`` without Prometheus gives the no-op providers."""
        if exporter == "none" and prometheus_port <= 0:
            return cls(event_span_sample_rate=sample_rate)
        sdk = providers.build_sdk_providers(exporter, service_name, otlp_endpoint, prometheus_port)
        tel = cls(sdk.tracer_provider, sdk.meter_provider, sample_rate, sdk.shutdown_hooks)
        tel.prometheus_address = sdk.prometheus_address
        return tel

    def stage_duration(self) -> Any:
        """The duration histogram the stages share; with it, on first use, the stages' observed
        counters (one set per meter)."""
        if self._stage_duration is None:
            # list(): one C-level copy, safe while the event loop adds a stage during a collection.
            self._stage_duration = create_stage_instruments(self.meter, lambda: list(self._stages.values()))
        return self._stage_duration

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

    def totals(self) -> dict[str, dict[str, float]]:
        return {name: st.totals.as_dict() for name, st in self._stages.items()}

    def shutdown(self) -> None:
        for provider in self._shutdown:
            with contextlib.suppress(Exception):
                provider.shutdown()
