"""The null sink: acknowledges everything at once. The pipeline's own ceiling in benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from pattern_tracker.model.events import PatternEvent
from pattern_tracker.model.outcome import DELIVERED, Outcome, ServiceHealth


class NullSink:
    name = "null"

    def __init__(self) -> None:
        self.delivered = 0

    async def start(self) -> None:
        return None

    async def deliver(self, events: Sequence[PatternEvent]) -> list[Outcome]:
        self.delivered += len(events)
        return [DELIVERED] * len(events)

    async def health(self) -> ServiceHealth:
        return ServiceHealth(available=True, status="healthy", components={"lineage_tracker": "operational"})

    async def close(self) -> None:
        return None
