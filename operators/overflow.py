"""Spool bound and expiry rules: plain code, no Rx, no clock, no I/O.

The spool holds at most ``cache_size`` events. When new events would pass the bound:
``drop_oldest`` removes the oldest entries to make room, ``drop_newest`` refuses the newcomers,
``block`` admits nothing and tells the source to wait. Entries older than ``cache_ttl`` expire.
Every drop and every expiry is counted by reason and logged by the caller: never silent.
Standard library only: the hook imports it.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from typing import Literal, NamedTuple

    OverflowPolicy = Literal["drop_oldest", "drop_newest", "block"]

    class OverflowPlan(NamedTuple):
        admit: int  # newcomers to queue
        drop_oldest: int  # queued entries to remove first
        drop_newest: int  # newcomers refused
        block: bool  # the source must wait for room

else:
    OverflowPlan = namedtuple("OverflowPlan", "admit drop_oldest drop_newest block")


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
