"""A blocking lineage store awaited: every call on one worker thread of its own.

Why one thread: LMDB has one writer at a time anyway, and a single thread keeps the group
commit's transactions (pattern_tracker.service.group_commit) in the order they were submitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_contract import FilesPage, LineageBackend, TrackResult

__all__ = ["ThreadedLineage"]


class ThreadedLineage:
    """:class:`~pattern_tracker.sinks.lineage_contract.AsyncLineageBackend` over a blocking backend."""

    name = "lmdb"

    def __init__(self, backend: LineageBackend) -> None:
        self.backend = backend
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lineage-store")

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def in_store_thread(self, fn: Callable[[], object]) -> None:
        """Queue ``fn`` to run on the store's thread, after the calls queued before it."""
        self._executor.submit(fn)

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
        return await self._run(self.backend.track_many, reqs, processing_mode, before_commit=before_commit)

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
