"""Where each event of the run is, and which way live events go: the one shared state.

The feed, the graph, settlement and the backlog all read and move events through it; ``busy``
is what keeps replay from pushing a spooled event that is already on its way (in the graph,
leaving the spool, or still being handed over by a source): each would be delivered twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from reactivex.subject import Subject

from pattern_tracker.model.events import Decoded, PatternEvent
from pattern_tracker.runtime.settings import RuntimeSettings
from pattern_tracker.telemetry import PipelineMetrics, Stage


class Credits:
    """A counting gate for events in the graph (Rx has no backpressure; merge's queue is unbounded)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.available = limit
        self._changed = asyncio.Event()

    def try_acquire(self, n: int) -> bool:
        if self.available < n:
            return False
        self.available -= n
        return True

    async def acquire(self, n: int) -> None:
        n = min(n, self.limit)
        while self.available < n:
            self._changed.clear()
            await self._changed.wait()
        self.available -= n

    def release(self, n: int) -> None:
        self.available = min(self.limit, self.available + n)
        self._changed.set()


class Flow:
    """The graph's entry, its credits, the sets of event ids by whereabouts, and the mode.

    *Backlog mode* (``backlog``): new events are only spooled, replay feeds the spool in order;
    ``spilling``: something could not be delivered since replay last caught up.
    """

    def __init__(self, settings: RuntimeSettings, source: Stage, metrics: PipelineMetrics) -> None:
        self.subject: Subject[list[PatternEvent]] = Subject()
        self.credits = Credits(settings.batch_size * (settings.max_in_flight_batches + 1))
        self.inflight: set[str] = set()
        self.leaving: set[str] = set()  # settled; the write removing their spool entry not yet committed
        self.unspooled: set[str] = set()  # in the graph from a durable source: no spool entry
        self.arriving: set[str] = set()  # spooled by a source, not yet handed over (Feed._hand)
        self.from_replay: set[str] = set()
        self.backlog = True  # until the replay source has looked at the spool
        self.spilling = False
        self.acked_since_wake = 0
        self._wake = asyncio.Event()
        self._source = source
        self._m = metrics

    def push(self, events: list[PatternEvent], ids: list[str] | None = None) -> None:
        """Into the graph as one chunk: operators pay their Rx overhead per chunk, not per event.
        ``ids``: the events' ids, when the caller has them already."""
        self._source.count(len(events), len(events))
        self.inflight.update([ev.event_id for ev in events] if ids is None else ids)
        # A copy (the caller keeps its list), of the same kind: a ``Decoded`` chunk stays one.
        self.subject.on_next(Decoded(events) if isinstance(events, Decoded) else list(events))

    def busy(self, event_id: str) -> bool:
        """In the graph, settled with its spool removal not yet committed, or spooled by a
        source that has yet to hand it over."""
        return event_id in self.inflight or event_id in self.leaving or event_id in self.arriving

    def forget(self, event_ids: Sequence[str]) -> int:
        """Out of the graph; returns how many of them replay had pushed (set operations: no
        Python loop per event)."""
        self._m.forget(event_ids)
        self.inflight.difference_update(event_ids)
        from_replay = self.from_replay
        if not from_replay:
            return 0
        before = len(from_replay)
        from_replay.difference_update(event_ids)
        return before - len(from_replay)

    def wake_replay(self) -> None:
        self._wake.set()

    def settled(self, replayed: int) -> None:
        """Events left the graph (``replayed`` of them pushed by replay): wake whoever waits on
        that — replay for its own pass's events, or to catch up in backlog mode, and the end of
        the run for an empty graph. Not on every batch of a live or archive stream: the
        wait/wake of an idle replay loop cost more per batch than delivering it."""
        if replayed or self.backlog or not self.inflight:
            self._wake.set()

    async def wait(self, stop: asyncio.Event, timeout: float) -> None:
        """Sleep until woken (a wake set before the call counts), stopped, or ``timeout``."""
        if not self._wake.is_set() and not stop.is_set():
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        self._wake.clear()
