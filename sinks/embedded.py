"""The embedded sink: deliver events into the local LMDB lineage store (no service needed).

One ``LineageStore.track_many`` call per batch, in one write transaction on one worker thread.
Outcomes follow the HTTP sink's classification: a rule violation is ``permanent`` (validation),
except "Parent pattern not found", which is ``retryable`` (parent_missing): the parent may still
be in flight (spooled, or later in another batch).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pattern_tracker.model.events import PatternEvent, to_track_request
from pattern_tracker.core.store import Store
from pattern_tracker.model.outcome import ALREADY_EXISTS, DELIVERED, Outcome, ServiceHealth
from pattern_tracker.sinks.lineage_store import LineageStore, LineageValidationError

__all__ = ["EmbeddedSink"]

log = logging.getLogger("pattern_tracker.sinks.embedded")


class EmbeddedSink:
    """Sink protocol (sinks/base.py) over a ``LineageStore`` in this process."""

    name = "embedded"

    def __init__(self, lineage: LineageStore) -> None:
        self.lineage = lineage
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> EmbeddedSink:
        """A sink over the process's one Store at ``path`` (the caller keeps owning the Store)."""
        return cls(LineageStore(Store.open(path)))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-sink")
        return self._executor

    async def start(self) -> None:
        self._pool()

    async def deliver(self, events: Sequence[PatternEvent]) -> list[Outcome]:
        if not events:
            return []
        try:
            reqs = [to_track_request(ev) for ev in events]
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self._pool(), self.lineage.track_many, reqs, "sequential")
        except Exception as exc:  # noqa: BLE001 - a store failure: every event may be retried
            log.error("embedded lineage store failed: %s: %s", type(exc).__name__, exc)
            failed = Outcome(status="retryable", reason=f"lineage store failed: {exc}", error_class="store")
            return [failed] * len(events)
        outcomes: list[Outcome] = []
        for res in results:
            if isinstance(res, LineageValidationError):
                if res.parent_missing:
                    outcomes.append(Outcome(status="retryable", reason=res.detail, error_class="parent_missing"))
                else:
                    outcomes.append(Outcome(status="permanent", reason=res.detail, error_class="validation"))
            elif res.get("status") == "already_exists":
                outcomes.append(ALREADY_EXISTS)
            else:
                outcomes.append(DELIVERED)
        return outcomes

    async def health(self) -> ServiceHealth:
        try:
            self.lineage.count()
        except Exception as exc:  # noqa: BLE001
            return ServiceHealth(available=False, status="unhealthy", detail=f"lineage store: {exc}",
                                 components={"lineage_tracker": f"error: {exc}"})
        return ServiceHealth(available=True, status="healthy", components={"lineage_tracker": "operational"})

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
