"""The cross-process counters of the run (requests.*, retry.*, spool.*, events.*, latency) and
the time of the last delivery: to the OTel counters at once, to the store with the next write
the run makes anyway, or within a second (no store write per step just for counting)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pattern_tracker.core import metrics
from pattern_tracker.core.store import Store
from pattern_tracker.runtime.background import Background
from pattern_tracker.state.spool import Spool
from pattern_tracker.telemetry import PipelineMetrics


class StoreCounters:
    def __init__(self, store: Store, spool: Spool, background: Background, pipeline_metrics: PipelineMetrics) -> None:
        self._store = store
        self._spool = spool
        self._background = background
        self._m = pipeline_metrics
        self._counts: dict[str, int] = {}  # waiting for the next store write
        self._last_acked_at: float | None = None
        self._flush_pending = False

    def tally(self, counts: dict[str, int]) -> None:
        """Counts of one step: to the OTel counters now, to the store with the next write."""
        self._m.add_counts(counts)
        for name, n in counts.items():
            metrics.bump(self._counts, name, n)

    def acked(self, now: float) -> None:
        """A delivery was acknowledged at ``now`` (the store's last delivery time)."""
        self._last_acked_at = now

    def take(self) -> dict[str, int]:
        """The counts kept back, for a write that adds them (``add``)."""
        taken, self._counts = self._counts, {}
        return taken

    def take_all(self) -> tuple[dict[str, int], float | None]:
        """The counts and the last delivery time kept back."""
        last, self._last_acked_at = self._last_acked_at, None
        return self.take(), last

    def add(self, txn: Any, counts: dict[str, int], last: float | None, now: float) -> None:
        """Inside a store write: the counts taken, and the last delivery time if any."""
        self._spool.counters.add(txn, counts, now)
        if last is not None:
            txn.put(metrics.LAST_DELIVERY_KEY, str(last).encode(), db=self._store.db("state"))

    def flush_soon(self) -> None:
        if self._flush_pending:
            return
        self._flush_pending = True
        asyncio.get_running_loop().call_later(1.0, self._flush)

    def _flush(self) -> None:
        """Counters (and the last delivery time) kept back since the last write, to the store."""
        self._flush_pending = False
        counts, last = self.take_all()
        if not counts and last is None:
            return
        now = time.time()
        if not self._background.closed:
            self._background.write(lambda txn: self.add(txn, counts, last, now))

    async def flush_now(self) -> None:
        """At the end of the run: what is left, in one awaited write."""
        leftover, last = self.take_all()
        if leftover or last is not None:
            await self._background.commit(lambda txn: self.add(txn, leftover, last, time.time()))
