"""What became of an event at delivery: the retryable/permanent vocabulary, defined once.

Operators (retry, circuit gate) and sinks both speak it, so it lives below both.
"""

from __future__ import annotations

from typing import Literal

import msgspec

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
_ACKNOWLEDGED = frozenset(("delivered", "already_exists"))


def all_acknowledged(outcomes: list[Outcome]) -> bool:
    """Every outcome an acknowledgement: the common case, answered without a loop when the
    sink returned the shared ``DELIVERED`` (the null sink, a batch stored whole)."""
    if outcomes.count(DELIVERED) == len(outcomes):  # identity first: C speed for the shared one
        return True
    return all(o.status in _ACKNOWLEDGED for o in outcomes)


class ServiceHealth(msgspec.Struct, kw_only=True, frozen=True):
    """Availability judged from the health body, never from the HTTP code alone."""

    available: bool
    status: str  # healthy | degraded | unhealthy | unreachable
    detail: str = ""
    components: dict[str, str] = msgspec.field(default_factory=dict)
