"""The graph, assembled from the operators, and one delivery attempt:

    entry ─► validate ─► batch ─► deliveries: per batch, circuit_gate ─► deliver ─► retry ─► settlement
             (Rx, per chunk)       (one coroutine per batch, at most max_concurrency at once)

Validation and batching are Rx operators over chunks; a batch's gate, attempts and retries are one
coroutine (``operators.delivery.deliver_batch``, the same policies as the Rx ``circuit_gate`` and
``retry`` operators), so a batch costs no Observable, scheduler hop or Task of its own. Each result
(settled, spilled, refused by the gate, invalid) goes to the settlement ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from pattern_tracker.core import metrics
from pattern_tracker.model.events import PatternEvent
from pattern_tracker.model.outcome import Outcome
from pattern_tracker.operators.backoff import RetryPolicy
from pattern_tracker.operators.batch import batch
from pattern_tracker.operators.circuit_gate import CircuitGate, call_failed
from pattern_tracker.operators.delivery import deliver_batch
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
from reactivex.scheduler.eventloop import AsyncIOScheduler

# The runtime's one logger name, whichever of its modules logs (log lines name it).
log = logging.getLogger("pattern_tracker.runtime")


# A batch and what the sink prepared for it (``sinks.base.Preparing``), or None.
Batch = tuple[list[PatternEvent], Any]


class Deliveries:
    """Batches delivered at most ``limit`` at a time, started in the order they came
    (what ``merge(max_concurrent)`` did, without an Observable per batch): a worker task takes
    the next waiting batch when it finishes one, and ends when none waits."""

    def __init__(self, limit: int, deliver: Callable[[Batch], Awaitable[None]],
                 background: Background, on_error: Callable[[Exception], None]) -> None:
        self._limit = limit
        self._deliver = deliver
        self._background = background
        self._on_error = on_error
        self._waiting: deque[Batch] = deque()
        self._running = 0
        self._on_done: Callable[[], None] | None = None

    def submit(self, batch: Batch) -> None:
        self._waiting.append(batch)
        if self._running < self._limit:
            self._running += 1
            self._background.track(asyncio.ensure_future(self._work()))

    def complete(self, on_done: Callable[[], None]) -> None:
        """No more batches will come: ``on_done`` once every one submitted is delivered."""
        self._on_done = on_done
        if self._running == 0:
            on_done()

    async def _work(self) -> None:
        waiting = self._waiting
        try:
            while waiting:
                await self._deliver(waiting.popleft())
        except Exception as exc:  # noqa: BLE001 - a bug past the sink (settlement): the graph fails, said once
            self._on_error(exc)
        finally:
            self._running -= 1
            if self._running == 0 and not waiting and self._on_done is not None:
                self._on_done()


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
        self._tracing = telemetry.tracing

    def start(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], stop: asyncio.Event) -> None:
        """Subscribe the chain to the flow's entry; ``done`` resolves when it completes or fails."""
        s = self._settings
        scheduler = AsyncIOScheduler(loop)
        gate = CircuitGate(self._breaker)
        settlement = self._settlement
        credits = self._flow.credits
        policy = self._policy
        attempt = self._attempt

        def on_error(exc: Exception) -> None:
            log.error("pipeline graph failed: %s: %s", type(exc).__name__, exc)
            if not done.done():
                done.set_exception(exc)
            # Nothing can flow any more: stop the sources (what they read is in the spool) and
            # release anyone waiting for credits, so the run ends instead of hanging.
            stop.set()
            credits.release(credits.limit)

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def deliver(item: Batch) -> Awaitable[None]:
            # The gate is asked when a worker takes the batch, not when the batch is formed: a
            # permit taken while the batch waits would let it through after the circuit opened.
            events, prepared = item
            if prepared is None:
                return deliver_batch(events, attempt, policy, gate, settlement.on_step, settlement.on_rejected)

            def call(evs: list[PatternEvent]) -> Awaitable[list[Outcome]]:
                # What was prepared serves every attempt at the whole batch (a retry of all of it);
                # a retry of some of its events is prepared again by the sink.
                return attempt(evs, prepared if len(evs) == len(events) else None)

            return deliver_batch(events, call, policy, gate, settlement.on_step, settlement.on_rejected)

        prepare = getattr(self._sink, "prepare", None)

        def submit(events: list[PatternEvent]) -> None:
            # Prepared as the batch is formed: an archive's events were decoded just now.
            prepared = None
            if prepare is not None:
                try:
                    prepared = prepare(events)
                except Exception as exc:  # noqa: BLE001 - deliver does the work again and answers for it
                    log.error("sink %s could not prepare a batch: %s: %s", self._sink.name, type(exc).__name__, exc)
            deliveries.submit((events, prepared))

        deliveries = Deliveries(s.max_concurrency, deliver, self._background, on_error)
        self._flow.subject.pipe(
            traced(self._s["validate"], validate(settlement.on_invalid)),
            traced(self._s["batch"], batch(s.batch_size, s.batch_linger, scheduler)),
        ).subscribe(on_next=submit, on_error=on_error, on_completed=lambda: deliveries.complete(finished),
                    scheduler=scheduler)

    async def _attempt(self, events: list[PatternEvent], prepared: Any = None) -> list[Outcome]:
        """One delivery attempt: exactly one outcome per event (never raises). ``prepared``: what
        the sink prepared for exactly these events."""
        sink = self._sink
        started = time.perf_counter()
        if self._tracing:
            earlier = self._m.call_started(ev.event_id for ev in events)  # for http.request.resend_count
            # A re-attempt: a retry span around its deliver span (retry → deliver → HTTP client spans).
            with self._s["retry"].span(sampled=earlier > 0, **{"pattern_tracker.model.events": len(events),
                                                                "pattern_tracker.attempt": earlier + 1}), \
                    self._s["deliver"].span(**{"pattern_tracker.batch.size": len(events), "pattern_tracker.sink": sink.name,
                                               "pattern_tracker.attempt": earlier + 1}):
                outcomes = await self._call_sink(events, prepared)
        else:
            outcomes = await self._call_sink(events, prepared)
        elapsed = time.perf_counter() - started
        self._s["deliver"].observe(elapsed)
        self._record_call(outcomes, elapsed)
        return outcomes

    async def _call_sink(self, events: list[PatternEvent], prepared: Any) -> list[Outcome]:
        sink = self._sink
        try:
            outcomes = await (sink.deliver(events) if prepared is None else sink.deliver(events, prepared))  # type: ignore[call-arg]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a sink bug must not lose events
            log.error("sink %s raised %s: %s", sink.name, type(exc).__name__, exc)
            return [Outcome(status="retryable", reason=str(exc), error_class="internal")] * len(events)
        if len(outcomes) != len(events):
            log.error("sink %s returned %d outcomes for %d events", sink.name, len(outcomes), len(events))
            return [Outcome(status="retryable", reason="outcome count mismatch", error_class="internal")] * len(events)
        return outcomes

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
