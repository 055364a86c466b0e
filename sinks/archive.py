"""The archive sink: records what flows through the pipeline into an LMDB archive
(`pattern-tracker archive record`), to replay it later (`pattern-tracker replay`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pattern_tracker.model.archive import Archive
from pattern_tracker.model.events import PatternEvent
from pattern_tracker.model.outcome import DELIVERED, Outcome, ServiceHealth


class ArchiveSink:
    name = "archive"

    def __init__(self, path: str) -> None:
        self.path = path
        self._archive: Archive | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-sink")

    async def start(self) -> None:
        self._archive = Archive(self.path, create=True)

    async def deliver(self, events: Sequence[PatternEvent]) -> list[Outcome]:
        assert self._archive is not None, "start() first"
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._archive.append, list(events))
        except Exception as exc:  # noqa: BLE001 - a full disk: the events stay in the spool
            return [Outcome(status="retryable", reason=f"archive write failed: {exc}", error_class="store")] * len(events)
        return [DELIVERED] * len(events)

    async def health(self) -> ServiceHealth:
        return ServiceHealth(available=True, status="healthy", components={"lineage_tracker": "operational"})

    async def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._archive is not None:
            self._archive.close()
            self._archive = None
