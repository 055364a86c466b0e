"""The pipeline: its collaborators composed, and one run of them from start to shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from pattern_tracker.core.lease import DrainLease
from pattern_tracker.core.redact import Redactor
from pattern_tracker.core.store import Store
from pattern_tracker.operators.backoff import ExponentialBackoff, RetryPolicy
from pattern_tracker.runtime.background import Background
from pattern_tracker.runtime.backlog import Backlog
from pattern_tracker.runtime.counters import StoreCounters
from pattern_tracker.runtime.feed import Feed, Source
from pattern_tracker.runtime.flow import Flow
from pattern_tracker.runtime.graph import Graph
from pattern_tracker.runtime.settings import RuntimeSettings
from pattern_tracker.runtime.settlement import Settlement
from pattern_tracker.runtime.summary import RunSummary
from pattern_tracker.sinks.base import Sink
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.state.dead_letter import DeadLetters
from pattern_tracker.state.ingest import Ingest
from pattern_tracker.state.spool import Spool
from pattern_tracker.telemetry import Telemetry

# The runtime's one logger name, whichever of its modules logs (log lines name it).
log = logging.getLogger("pattern_tracker.runtime")


class Pipeline:
    def __init__(
        self,
        store: Store,
        sink: Sink,
        telemetry: Telemetry,
        settings: RuntimeSettings,
        *,
        spool: Spool | None = None,
        breaker: SharedBreaker | None = None,
        policy: RetryPolicy | None = None,
        replay: bool = True,
        redactor: Redactor | None = None,
        deny_globs: Sequence[str] = (),
    ) -> None:
        from pattern_tracker.operators.breaker import BreakerSettings

        self.store = store
        self.sink = sink
        self.tel = telemetry
        self.settings = settings
        self.spool = spool or Spool(store)
        self.breaker = breaker or SharedBreaker(store, BreakerSettings())
        self.policy = policy or ExponentialBackoff()
        self.replay_enabled = replay
        self.dead_letters = DeadLetters(store)
        self.ingest = Ingest(store, self.spool, redactor=redactor, deny_globs=deny_globs)
        self.lease = DrainLease(store)
        self.summary = RunSummary()
        # Every stage, created in this order (the order telemetry lists them in).
        stages = {name: telemetry.stage(name) for name in
                  ("source", "validate", "batch", "circuit_gate", "retry", "deliver", "spill", "replay", "dead_letter", "hook")}
        m = telemetry.pipeline
        self._flow = Flow(settings, stages["source"], m)
        self._credits = self._flow.credits
        self._background = Background(store, self._flow, self.summary)
        self._counters = StoreCounters(store, self.spool, self._background, m)
        self._settlement = Settlement(self._flow, self._background, self._counters, self.spool, self.dead_letters,
                                      self.summary, telemetry)
        self._graph = Graph(settings, sink, self.breaker, self.policy, self._flow, self._settlement, self._counters,
                            self._background, telemetry)
        self._backlog = Backlog(settings, self.policy, self.breaker, self.lease, self.spool, self._background,
                                self._flow, self._counters, self.summary, telemetry)
        self._started = time.monotonic()
        m.observe(self.breaker, self.spool)  # gauges: read only when a metric reader collects
        telemetry.instrument_sink(sink)  # HTTP client spans (HttpSink's on_request hook)

    @property
    def last_delivery_at(self) -> float | None:
        return self._settlement.last_delivery_at

    async def run(self, sources: Sequence[Source], stop: asyncio.Event, *, drain: bool = False, until_empty: bool = False) -> RunSummary:
        """Run until every source has finished and the backlog is delivered (or ``stop`` is set).

        ``drain=True``: the backlog is the only source; the run ends when the spool is empty,
        or when the circuit is open (unless ``until_empty``).
        """
        loop = asyncio.get_running_loop()
        flow, io = self._flow, self._background.io
        self._started = time.monotonic()
        since = time.time()
        dropped_before = await self._overflow_drops(since)
        self._background.stop_on_loss(stop)
        done: asyncio.Future[None] = loop.create_future()
        self._graph.start(loop, done, stop)
        await self.sink.start()
        feed = Feed(self.ingest, self.spool, self._background, flow, self._settlement, self.summary,
                    self._backlog.service_unavailable, stop)
        finish = asyncio.Event()
        if drain:
            finish.set()
        # An empty spool at start: live events can flow at once (no older backlog to keep order with).
        if drain is False and await io(self.spool.size) == 0:
            flow.backlog = False
        replay_task = (asyncio.create_task(self._backlog.replay(stop, finish, until_empty))
                       if self.replay_enabled or drain else None)
        if replay_task is None:
            flow.backlog = False
        try:
            tasks = [asyncio.create_task(src(feed, stop)) for src in sources]
            try:
                results = await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                for t in tasks:
                    t.cancel()
            finish.set()
            flow.wake_replay()
            if replay_task is not None:
                await replay_task
            else:
                while flow.inflight and not stop.is_set():
                    await flow.wait(stop, self.settings.replay_poll)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    raise r
        finally:
            finish.set()
            if replay_task is not None and not replay_task.done():
                replay_task.cancel()
                await asyncio.gather(replay_task, return_exceptions=True)
            flow.subject.on_completed()
            await self._finish(done, since, dropped_before)
        return self.summary

    async def _overflow_drops(self, since: float) -> int | None:
        """The spool's overflow drops counted from ``since``'s bucket on (None: unreadable, said)."""
        try:
            return await self._background.io(self.spool.overflow_drops, since)
        except Exception as exc:  # noqa: BLE001 - a read of counters: the run goes on, its summary without them
            log.error("reading the spool's drop counters: %s", exc)
            return None

    async def _finish(self, done: asyncio.Future[None], since: float, dropped_before: int | None) -> None:
        s = self.settings
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout=s.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown: %d event(s) still in flight after %.1fs; they stay in the spool",
                        len(self._flow.inflight), s.shutdown_timeout)
        except Exception:  # noqa: BLE001 - already logged by the graph
            pass
        await self._background.wind_down()
        await self.sink.close()
        try:
            await self._counters.flush_now()
        except Exception as exc:  # noqa: BLE001 - counters only (the store full?): the summary still counts
            log.error("store write failed (no event lost): the run's counters: %s", exc)
        self.summary.left_in_spool = await self._background.io(self.spool.size)
        # Dropped while the run ran: the shared counters' delta (hooks' drops included).
        dropped_after = await self._overflow_drops(since) if dropped_before is not None else None
        if dropped_after is not None and dropped_before is not None:
            self.summary.dropped = dropped_after - dropped_before
        self.summary.seconds = time.monotonic() - self._started
        try:
            await self._background.io(self.lease.release)
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself
            log.error("store write failed (no event lost): releasing the drain lease: %s", exc)
        self._background.shutdown()
