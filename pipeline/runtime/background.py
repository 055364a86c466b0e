"""Work beside the event loop: store calls on the one store thread, and delivery attempts.

LMDB commits stay off the event loop; what is still running at the end of the run is awaited
(store writes) or cancelled (delivery attempts) before the store thread shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pattern_tracker.core.store import Store
from pattern_tracker.runtime.flow import Flow

# The runtime's one logger name, whichever of its modules logs (log lines name it).
log = logging.getLogger("pattern_tracker.runtime")
T = TypeVar("T")


class Background:
    def __init__(self, store: Store, flow: Flow) -> None:
        self.store = store
        self._flow = flow
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pattern-tracker-store")
        self._tasks: set[asyncio.Future[Any]] = set()

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store thread: LMDB commits stay off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def commit(self, txn_fn: Callable[[Any], Any]) -> None:
        """One store write, awaited."""
        await self.io(self.store.write, txn_fn)

    def write(self, txn_fn: Callable[[Any], Any], *, leaving: Sequence[str] = ()) -> None:
        """A store write on the store thread, not awaited. ``leaving``: settled events whose spool
        entry this write removes; until it commits, replay must not pick them up again."""
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self.store.write, txn_fn)
        self._tasks.add(fut)
        if leaving:
            self._flow.leaving.update(leaving)
        fut.add_done_callback(lambda f: self._written(f, leaving))

    def _written(self, fut: asyncio.Future[Any], leaving: Sequence[str]) -> None:
        self._tasks.discard(fut)
        if leaving:
            self._flow.leaving.difference_update(leaving)
            self._flow.wake_replay()  # their spool entries are gone: replay may find the spool empty now
        if not fut.cancelled() and fut.exception() is not None:
            log.error("store write failed: %s", fut.exception())

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
