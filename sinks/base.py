"""The sink contract: one Outcome per event (model.outcome), so a partial batch failure retries only what failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pattern_tracker.model.events import PatternEvent
from pattern_tracker.model.outcome import Outcome, ServiceHealth


class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def deliver(self, events: Sequence[PatternEvent]) -> list[Outcome]:
        """Return exactly one Outcome per event, in the same order. Never raises for delivery errors."""
        ...

    async def health(self) -> ServiceHealth: ...

    async def close(self) -> None: ...
