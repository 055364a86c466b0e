"""Spool bound and expiry rules (plain code), and the ``spill`` operator that routes what cannot
be delivered now to the spool.

The spool holds at most ``cache_size`` events. When new events would pass the bound:
``drop_oldest`` removes the oldest entries to make room, ``drop_newest`` refuses the newcomers,
``block`` admits nothing and tells the source to wait. Entries older than ``cache_ttl`` expire.
Every drop and every expiry is counted by reason and logged by the caller: never silent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec
import reactivex.operators as ops
from reactivex import Observable

OverflowPolicy = Literal["drop_oldest", "drop_newest", "block"]


class OverflowPlan(msgspec.Struct, frozen=True):
    admit: int  # newcomers to queue
    drop_oldest: int  # queued entries to remove first
    drop_newest: int  # newcomers refused
    block: bool  # the source must wait for room


def overflow_plan(size: int, bound: int, incoming: int, policy: OverflowPolicy) -> OverflowPlan:
    """What to do with ``incoming`` new events when ``size`` are queued and at most ``bound`` may be."""
    room = max(0, bound - size)
    if incoming <= room:
        return OverflowPlan(incoming, 0, 0, False)
    excess = incoming - room
    if policy == "drop_newest":
        return OverflowPlan(room, 0, excess, False)
    if policy == "block":
        return OverflowPlan(0, 0, 0, True)
    # drop_oldest: make room from the queue (also bringing a queue that is over a lowered bound
    # back down to it); newcomers beyond the whole bound are dropped too.
    admit = min(incoming, bound)
    return OverflowPlan(admit, min(size, size + admit - bound), incoming - admit, False)


def is_expired(enqueued_at: float, now: float, ttl: float) -> bool:
    return now - enqueued_at > ttl


class Spill(msgspec.Struct, frozen=True):
    """Events that cannot be delivered now, and why (circuit_open, retries_exhausted, not_retryable, shutdown)."""

    events: list[Any]
    reason: str


def spill(on_spill: Callable[[Spill], None]) -> Callable[[Observable[Any]], Observable[Any]]:
    """Hand every ``Spill`` in the stream to ``on_spill`` (which makes it durable); pass the rest on.

    Args:
        on_spill: writes the events to the spool (or keeps them there) and counts the reason.

    Returns:
        An operator function that removes ``Spill`` items from the stream.
    """

    def route(item: Any) -> bool:
        if isinstance(item, Spill):
            on_spill(item)
            return False
        return True

    return ops.filter(route)
