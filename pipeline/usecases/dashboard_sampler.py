"""The dashboard's sampler: a look at the data directory every ``period`` seconds into the
history's ring buffer, and a probe of the service beside it.

Each look (``dashboard.observe``) runs in a worker thread, so a ``run`` serving the dashboard
keeps its event loop for the pipeline; a page asking for the document costs no store read (the
latest look is served, at most one period old). The service probe runs in its own loop: a service
that hangs delays the health panel's service line, never the other panels.

At start the history is refilled from the store's minute buckets of the last hour (the counters
every process keeps anyway): delivered/s, latency and errors have their hour at once, at minute
resolution; the spool depth and the circuit, which the store keeps no past of, start with this
process. The history itself stays in memory (docs/operations.md, "The dashboard", says why).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pattern_tracker.usecases.dashboard import Observation, Probe, document, observe, origin_for, read_buckets
from pattern_tracker.usecases.dashboard_history import SPAN_SECONDS, History, refill
from pattern_tracker.usecases.health import probe

log = logging.getLogger("pattern_tracker.dashboard")

PERIOD_SECONDS = 2.0


class Sampler:
    """Keeps the dashboard's latest look, latest probe and history while it runs."""

    def __init__(self, cfg: Any, store: Any, sink: Callable[[], Any] | None = None, *,
                 period: float = PERIOD_SECONDS, span: float = SPAN_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.period = float(period)
        self.span = float(span)
        self.clock = clock
        self.id = secrets.token_hex(6)  # the page starts its history afresh when this changes
        self.history = History(span)
        self.observation: Observation | None = None
        self.probe: Probe | None = None
        self.origin = 0.0
        self._sink = sink
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing: set[str] = set()

    async def start(self) -> None:
        """Refill the history, take the first look (a page never finds it empty), start the loops."""
        now = self.clock()
        self.origin = origin_for(now, self.span)
        try:
            buckets = await asyncio.to_thread(read_buckets, self.store, self.origin)
            self.history.extend(refill(buckets, self.origin, now))
        except Exception as exc:  # noqa: BLE001 - no past is no reason not to show the present
            log.warning("dashboard: history not refilled from the store: %s: %s", type(exc).__name__, exc)
        await self.tick()
        self._tasks.append(asyncio.create_task(self._every(self.tick, "sample")))
        if self._sink is not None:
            self._tasks.append(asyncio.create_task(self._every(self.check_service, "probe")))

    async def tick(self) -> None:
        """One look at the data directory into the history."""
        obs = await asyncio.to_thread(observe, self.cfg, self.store, self.clock(), self.origin)
        self.history.add(obs.sample)
        self.observation = obs

    async def check_service(self) -> None:
        """The service's health through the configured sink, as ``pattern-tracker health`` asks it."""
        assert self._sink is not None
        timeout = max(1.0, float(self.cfg.api.timeouts.total))
        available, status, detail = await probe(self._sink(), timeout=timeout)
        self.probe = Probe(available=available, status=status, detail=detail, checked_at=self.clock())

    async def _every(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        while not self._stop.is_set():
            try:
                await step()
                self._failing.discard(what)
            except Exception as exc:  # noqa: BLE001 - the dashboard must never stop a run
                if what not in self._failing:  # one line when it starts failing, not one per period
                    self._failing.add(what)
                    log.warning("dashboard %s failed: %s: %s", what, type(exc).__name__, exc)
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.period)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        """End the loops: a look in progress finishes (it holds a read transaction), a probe is cancelled."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks[1:]:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    def document(self, since: float | None = None) -> dict[str, Any]:
        """The page's document with the history's points after ``since`` (all when None)."""
        if self.observation is None:
            raise RuntimeError("the sampler has not started")
        return document(self.cfg, self.observation, self.probe, self.history.points(since), self.history.latest(),
                        sampler={"id": self.id, "period_seconds": self.period, "span_seconds": self.span})
