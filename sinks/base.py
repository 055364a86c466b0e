"""The sink contract: per-event outcomes, so a partial batch failure retries only what failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from pattern_tracker.events import PatternEvent

OutcomeStatus = Literal["delivered", "already_exists", "retryable", "permanent"]


class Outcome(msgspec.Struct, kw_only=True, frozen=True):
    """What became of one event. ``delivered`` and ``already_exists`` are acknowledgements."""

    status: OutcomeStatus
    reason: str = ""
    http_status: int | None = None
    # Seconds the service asked us to wait (Retry-After), when it said so.
    retry_after: float | None = None
    # Short machine-readable class for metrics: connection, timeout, http_503, validation, ...
    error_class: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status in ("delivered", "already_exists")


DELIVERED = Outcome(status="delivered")
ALREADY_EXISTS = Outcome(status="already_exists")


class ServiceHealth(msgspec.Struct, kw_only=True, frozen=True):
    """Availability judged from the health body, never from the HTTP code alone."""

    available: bool
    status: str  # healthy | degraded | unhealthy | unreachable
    detail: str = ""
    components: dict[str, str] = msgspec.field(default_factory=dict)


class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def deliver(self, events: Sequence[PatternEvent]) -> list[Outcome]:
        """Return exactly one Outcome per event, in the same order. Never raises for delivery errors."""
        ...

    async def health(self) -> ServiceHealth: ...

    async def close(self) -> None: ...
