"""A blocking lineage store awaited: every call on one worker thread of its own.

Why one thread: LMDB has one writer at a time anyway, and a single thread keeps the group
commit's transactions (pattern_tracker.service.group_commit) in the order they were submitted.

Why the event loop stands still while a write transaction executes (:data:`HOLD_LIMIT`): the
store thread is serve's bottleneck, and every LMDB call it makes lets go of the GIL; each time,
whatever the loop has ready (a chunk of a request body, a response to write) takes the GIL and the
store thread waits for it back. Measured with serve's ingest benchmark, the store thread took
~160 µs per event executing and committing beside a busy loop, ~80 µs alone. So the loop blocks
(without the GIL) until the transaction's events are written, and runs while it commits (which
waits on the disk, not the GIL): requests are read and decoded then. Bounded: after
``HOLD_LIMIT`` (a transaction waiting for another process's write lock, a huge batch) the loop
goes on and awaits the result as usual.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_contract import FilesPage, LineageBackend, TrackResult

__all__ = ["HOLD_LIMIT", "ThreadedLineage"]

HOLD_LIMIT = 0.05  # seconds the event loop may stand still while a write transaction executes


class ThreadedLineage:
    """:class:`~pattern_tracker.sinks.lineage_contract.AsyncLineageBackend` over a blocking backend."""

    name = "lmdb"

    def __init__(self, backend: LineageBackend) -> None:
        self.backend = backend
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lineage-store")

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._executor.shutdown(wait=True)

    def validate_batch(self, reqs: Sequence[TrackRequest]) -> str | None:
        return self.backend.validate_batch(reqs)

    async def track(self, req: TrackRequest) -> dict[str, Any]:
        return await self._run(self.backend.track, req)

    async def track_many(self, reqs: Sequence[TrackRequest], processing_mode: str = "sequential", *,
                         before_commit: Callable[[], None] | None = None) -> list[TrackResult]:
        executed = threading.Event()

        def written() -> None:
            executed.set()
            if before_commit is not None:
                before_commit()

        def work() -> list[TrackResult]:
            try:
                return self.backend.track_many(reqs, processing_mode, before_commit=written)
            finally:
                executed.set()  # failed before its commit: the loop goes on at once

        done = self._executor.submit(work)
        executed.wait(HOLD_LIMIT)  # the loop stands still (without the GIL) while the events are written
        return await asyncio.wrap_future(done)

    async def ancestry(self, pattern_id: str) -> dict[str, Any]:
        return await self._run(self.backend.ancestry, pattern_id)

    async def descendants(self, pattern_id: str) -> dict[str, Any]:
        return await self._run(self.backend.descendants, pattern_id)

    async def query(self, file_path: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return await self._run(self.backend.query, file_path, limit)

    async def count(self) -> int:
        return await self._run(self.backend.count)

    async def get(self, pattern_id: str, version: str | None = None) -> dict[str, Any] | None:
        return await self._run(self.backend.get, pattern_id, version)

    async def list_files(self, search: str | None = None, after: str | None = None, limit: int = 50) -> FilesPage:
        return await self._run(self.backend.list_files, search, after, limit)

    async def status(self) -> str:
        try:
            await self._run(self.backend.count)
        except Exception as exc:  # noqa: BLE001 - the probe reports, it does not raise
            return f"error: {exc}"
        return "operational"
