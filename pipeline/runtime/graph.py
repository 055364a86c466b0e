"""The Rx chain, assembled from the operators, and one delivery attempt:

    entry ─► validate ─► batch ─► circuit_gate ─► retry(deliver) ─► spill ─► settlement

Each result (settled, spilled, refused by the gate, invalid) goes to the settlement ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import reactivex as rx
import reactivex.operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler

from pattern_tracker.core import metrics
from pattern_tracker.model.events import PatternEvent
from pattern_tracker.model.outcome import Outcome
from pattern_tracker.operators.backoff import RetryPolicy
from pattern_tracker.operators.batch import batch
from pattern_tracker.operators.circuit_gate import CircuitGate, call_failed, circuit_gate
from pattern_tracker.operators.retry import retry
from pattern_tracker.operators.spill import spill
from pattern_tracker.operators.traced import traced
from pattern_tracker.operators.validate import validate
from pattern_tracker.runtime.background import Background
from pattern_tracker.runtime.counters import StoreCounters
from pattern_tracker.runtime.flow import Flow
from pattern_tracker.runtime.settings import RuntimeSettings
from pattern_tracker.runtime.settlement import Settlement
from pattern_tracker.sinks.base import Sink
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.telemetry import Telemetry

# The runtime's one logger name, whichever of its modules logs (log lines name it).
log = logging.getLogger("pattern_tracker.runtime")


class Graph:
    def __init__(self, settings: RuntimeSettings, sink: Sink, breaker: SharedBreaker, policy: RetryPolicy,
                 flow: Flow, settlement: Settlement, counters: StoreCounters, background: Background,
                 telemetry: Telemetry) -> None:
        self._settings = settings
        self._sink = sink
        self._breaker = breaker
        self._policy = policy
        self._flow = flow
        self._settlement = settlement
        self._counters = counters
        self._background = background
        self._s = {name: telemetry.stage(name) for name in ("validate", "batch", "retry", "deliver")}
        self._m = telemetry.pipeline

    def start(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], stop: asyncio.Event) -> None:
        """Subscribe the chain to the flow's entry; ``done`` resolves when it completes or fails."""
        s = self._settings
        scheduler = AsyncIOScheduler(loop)
        gate = CircuitGate(self._breaker)
        settlement = self._settlement
        credits = self._flow.credits

        def on_error(exc: Exception) -> None:
            log.error("pipeline graph failed: %s: %s", type(exc).__name__, exc)
            if not done.done():
                done.set_exception(exc)
            # Nothing can flow any more: stop the sources (what they read is in the spool) and
            # release anyone waiting for credits, so the run ends instead of hanging.
            stop.set()
            credits.release(credits.limit)

        def on_completed() -> None:
            if not done.done():
                done.set_result(None)

        attempts = retry(self._call, self._policy, gate, scheduler)

        def unit(events: list[PatternEvent]) -> rx.Observable[Any]:
            # The gate is asked when merge starts the unit, not when the batch is formed: merge
            # queues units, and a permit taken before the queue would let batches through after
            # the circuit opened.
            return rx.defer(lambda _: rx.of(events).pipe(circuit_gate(gate, settlement.on_rejected), ops.flat_map(attempts)))

        self._flow.subject.pipe(
            traced(self._s["validate"], validate(settlement.on_invalid)),
            traced(self._s["batch"], batch(s.batch_size, s.batch_linger, scheduler)),
            ops.map(unit),
            ops.merge(max_concurrent=s.max_concurrency),
            spill(lambda sp: settlement.spill(sp.events, sp.reason)),
        ).subscribe(on_next=settlement.on_step, on_error=on_error, on_completed=on_completed, scheduler=scheduler)

    def _call(self, events: list[PatternEvent]) -> rx.Observable[list[Outcome]]:
        """One delivery attempt as a lazy Observable of its outcomes (never fails)."""
        sink = self._sink

        async def attempt() -> list[Outcome]:
            earlier = self._m.call_started(ev.event_id for ev in events)  # for http.request.resend_count
            started = time.perf_counter()
            # A re-attempt: a retry span around its deliver span (retry → deliver → HTTP client spans).
            with self._s["retry"].span(sampled=earlier > 0, **{"pattern_tracker.model.events": len(events),
                                                                "pattern_tracker.attempt": earlier + 1}), \
                    self._s["deliver"].span(**{"pattern_tracker.batch.size": len(events), "pattern_tracker.sink": sink.name,
                                               "pattern_tracker.attempt": earlier + 1}):
                try:
                    outcomes = await sink.deliver(events)
                except Exception as exc:  # noqa: BLE001 - a sink bug must not lose events
                    log.error("sink %s raised %s: %s", sink.name, type(exc).__name__, exc)
                    outcomes = [Outcome(status="retryable", reason=str(exc), error_class="internal")] * len(events)
            elapsed = time.perf_counter() - started
            self._s["deliver"].observe(elapsed)
            if len(outcomes) != len(events):
                log.error("sink %s returned %d outcomes for %d events", sink.name, len(outcomes), len(events))
                outcomes = [Outcome(status="retryable", reason="outcome count mismatch", error_class="internal")] * len(events)
            self._record_call(outcomes, elapsed)
            return outcomes

        task = asyncio.ensure_future(attempt())
        self._background.track(task)
        return rx.from_future(task)

    def _record_call(self, outcomes: list[Outcome], elapsed: float) -> None:
        m: dict[str, int] = {}
        metrics.bump(m, "requests.total")
        if call_failed(outcomes):
            cls = next((o.error_class for o in outcomes if o.error_class), None) or "unknown"
            metrics.bump(m, f"requests.failed.{cls}")
        else:
            metrics.bump(m, "requests.succeeded")
        metrics.observe(m, "delivery", [elapsed])
        self._m.delivery(elapsed)
        self._counters.tally(m)
