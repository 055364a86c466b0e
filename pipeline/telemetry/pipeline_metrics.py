"""The pipeline-wide instruments: requests, retries, circuit, spool, dead letters, latencies.

Counters are added once per batch or delivery attempt, never per event. Gauges (circuit state,
spool size and age) are observable: they read the store only when a metric reader collects.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics

from pattern_tracker.core.metrics import BUCKETS_MS
from pattern_tracker.telemetry.http_spans import EARLIER_ATTEMPTS

if TYPE_CHECKING:
    from pattern_tracker.telemetry import Telemetry

__all__ = ["CIRCUIT_STATES", "LATENCY_BUCKETS_S", "RETRY_KINDS", "SPILL_STAGE", "PipelineMetrics"]

log = logging.getLogger("pattern_tracker.telemetry")

# Histogram bucket boundaries (seconds). Latencies use the store histogram's buckets
# (pipeline/core/metrics.py), so `metrics` and Prometheus give the same p50/p95/p99.
LATENCY_BUCKETS_S: tuple[float, ...] = tuple(b / 1000.0 for b in BUCKETS_MS if b != math.inf)

# Circuit state gauge values.
CIRCUIT_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3, "disabled": -1}

# Where a spill reason leaves the live path (the stage of ``pattern_tracker.stage.dropped``).
SPILL_STAGE: dict[str, str] = {
    "circuit_open": "circuit_gate",
    "retries_exhausted": "retry",
    "not_retryable": "retry",
    "parent_missing": "retry",
    "backlog": "source",
    "overloaded": "source",
}

RETRY_KINDS: tuple[str, ...] = (
    "successful_without_retry", "successful_with_retry", "failed_without_retry", "failed_with_retry",
)



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
    """The pipeline-wide instruments (names under ``pattern_tracker.``; see docs/telemetry.md).

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
        EARLIER_ATTEMPTS.set(earlier)
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

