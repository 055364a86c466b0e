"""The OTel SDK providers and exporters behind ``telemetry.exporter`` and ``prometheus_port``.

Exporters: ``console``, ``otlp`` (HTTP, ``<endpoint>/v1/traces`` and ``/v1/metrics``), and,
with any of them, a Prometheus endpoint on 127.0.0.1. The SDK and the exporters are imported
inside the functions, only when used: ``Telemetry`` with the no-op API providers never loads them.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from pattern_tracker.telemetry.pipeline_metrics import LATENCY_BUCKETS_S
from pattern_tracker.telemetry.stages import STAGE_DURATION_BUCKETS_S

__all__ = ["PrometheusEndpoint", "SdkProviders", "build_sdk_providers", "views"]

log = logging.getLogger("pattern_tracker.telemetry")


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


class SdkProviders(NamedTuple):
    """What ``build_sdk_providers`` set up, for ``Telemetry``."""

    tracer_provider: Any  # None unless an exporter is configured (Prometheus alone: metrics only)
    meter_provider: Any
    shutdown_hooks: list[Any]  # in shutdown order
    prometheus_address: tuple[str, int] | None  # (host, port) when a Prometheus endpoint serves


def build_sdk_providers(exporter: str, service_name: str, otlp_endpoint: str, prometheus_port: int = 0) -> SdkProviders:
    """SDK providers for ``exporter`` none | console | otlp, plus a Prometheus endpoint on
    127.0.0.1:``prometheus_port`` when > 0 (with any exporter)."""
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
        prometheus = PrometheusEndpoint(prometheus_port)
        readers.append(prometheus.reader)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=views())
    hooks.append(meter_provider)
    if prometheus is not None:
        hooks.append(prometheus)  # after the provider: the server stops last
    return SdkProviders(tracer_provider, meter_provider, hooks, None if prometheus is None else prometheus.address)


class PrometheusEndpoint:
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
