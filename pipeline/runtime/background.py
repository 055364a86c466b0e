"""Work beside the event loop: store calls on the one store thread, and delivery attempts.

LMDB commits stay off the event loop; what is still running at the end of the run is awaited
(store writes) or cancelled (delivery attempts) before the store thread shuts down.

A write that is the only record of some events (``keeping``) must never fail silently: the
events are counted as not kept in the run's summary and the input stops (``not_kept``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pattern_tracker.core.store import Store, StoreError
from pattern_tracker.runtime.flow import Flow
from pattern_tracker.runtime.summary import RunSummary
from pattern_tracker.state.spool import SpoolFull

# The runtime's one logger name, whichever of its modules logs (log lines name it).
log = logging.getLogger("pattern_tracker.runtime")
T = TypeVar("T")


class Background:
    def __init__(self, store: Store, flow: Flow, summary: RunSummary) -> None:
        self.store = store
        self._flow = flow
        self._summary = summary
        self._stop: asyncio.Event | None = None  # the run's: set when events cannot be kept
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pattern-tracker-store")
        self._tasks: set[asyncio.Future[Any]] = set()
        self.keeping = 0  # events whose only record is a write queued here, not yet done

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store thread: LMDB commits stay off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def commit(self, txn_fn: Callable[[Any], Any]) -> None:
        """One store write, awaited."""
        await self.io(self.store.write, txn_fn)

    def stop_on_loss(self, stop: asyncio.Event) -> None:
        """The run's stop signal, set when a write fails to keep events: no more input is read."""
        self._stop = stop

    def write(self, txn_fn: Callable[[Any], Any], *, leaving: Sequence[str] = (), keeping: Sequence[str] = (),
              what: str = "") -> asyncio.Future[Any]:
        """A store write on the store thread, not awaited (its future is returned for a caller
        that reports its result). ``leaving``: settled events whose spool entry this write
        removes; until it commits, replay must not pick them up again. ``keeping``: events this
        write is the only record of (``what`` it does with them): if it fails they are lost, and
        the run must say so (``not_kept``)."""
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self.store.write, txn_fn)
        self._tasks.add(fut)
        if leaving:
            self._flow.leaving.update(leaving)
        self.keeping += len(keeping)
        fut.add_done_callback(lambda f: self._written(f, leaving, len(keeping), what))
        return fut

    def _written(self, fut: asyncio.Future[Any], leaving: Sequence[str], keeping: int, what: str) -> None:
        self._tasks.discard(fut)
        self.keeping -= keeping
        if leaving:
            self._flow.leaving.difference_update(leaving)
            self._flow.wake_replay()  # their spool entries are gone: replay may find the spool empty now
        exc = None if fut.cancelled() else fut.exception()
        if exc is None:
            return
        if keeping:
            self.not_kept(keeping, what, exc)
        else:
            # Only removals of settled spool entries and counters: an entry left is delivered
            # again and recognised (already_exists); nothing is lost.
            log.error("store write failed (no event lost): %s", exc)

    def not_kept(self, n: int, what: str, exc: BaseException) -> None:
        """``n`` events neither delivered nor kept (the write ``what`` failed): counted, said
        once, and the input stopped — reading more would only lose more."""
        first = not self._summary.not_kept
        self._summary.not_kept += n
        if isinstance(exc, SpoolFull):
            # An archive's spill found no free room (another process filled the spool since the
            # feed looked): the archive keeps them; reading stops as when the spool is full.
            self._summary.gave_up_on_full_spool = True
        reason = str(exc) if isinstance(exc, (StoreError, SpoolFull)) else f"{type(exc).__name__}: {exc}"
        if first:
            self._summary.not_kept_because = reason
            log.error("%d event(s) neither delivered nor kept: %s failed (%s); reading stops", n, what, reason)
        else:
            log.debug("%d more event(s) not kept: %s failed (%s)", n, what, reason)
        if self._stop is not None:
            self._stop.set()

    def track(self, task: asyncio.Future[Any]) -> None:
        """A delivery attempt, cancelled if still running at the end of the run."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def closed(self) -> bool:
        return self._executor._shutdown

    async def wind_down(self) -> None:
        """Cancel the delivery attempts still running, await the store writes."""
        for task in list(self._tasks):
            if isinstance(task, asyncio.Task):
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
