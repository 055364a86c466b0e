"""The sink contract: one Outcome per event (model.outcome), so a partial batch failure retries only what failed.

A sink may also do a batch's own work ahead of its delivery (``Preparing``): the pipeline calls
``prepare(events)`` as it forms the batch, while the events it just read are still in the CPU's
caches, and hands the result to ``deliver``. Encoding a batch's HTTP body a few batches after
decoding its events cost ~60% more than right after (the ~10 KB of code per event fetched again
from memory): most of what the pipeline's HTTP client spent beyond a hand-written one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

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


class Preparing(Sink, Protocol):
    def prepare(self, events: Sequence[PatternEvent]) -> Any:
        """The batch's delivery work that can be done now (an encoded request body); must not raise."""
        ...

    async def deliver(self, events: Sequence[PatternEvent], prepared: Any = None) -> list[Outcome]:
        """As ``Sink.deliver``; ``prepared``: what ``prepare`` returned for exactly these events, or None."""
        ...
