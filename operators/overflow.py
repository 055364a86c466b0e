"""Spool bound and expiry rules: plain code, no Rx, no clock, no I/O.

The spool holds at most ``cache_size`` events. When new events would pass the bound:
``drop_oldest`` removes the oldest entries to make room, ``drop_newest`` refuses the newcomers,
``block`` admits nothing and tells the source to wait. Entries older than ``cache_ttl`` expire.
Every drop and every expiry is counted by reason and logged by the caller: never silent.
What keeping an undeliverable event for later does to the spool is ``spill_action``.
Standard library only: the hook imports it.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from typing import Literal, NamedTuple

    OverflowPolicy = Literal["drop_oldest", "drop_newest", "block"]
    SpillAction = Literal["gone", "append", "full"]

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


def spill_action(durable: bool, size: int, bound: int) -> SpillAction:
    """What a spill (keeping an event that cannot be delivered now) does with an event that has
    no spool entry, as its own write transaction sees the spool; one still queued stays where
    it is (marked spilled). ``durable``: its source keeps it (an archive's event, which enters
    the graph without an entry); ``size``: the entries queued.

    * ``gone``: a live event (hook, watch, stdin). Its entry was written once, with its
      version, before it entered the graph, and has left the spool since by a step that is
      final and was counted when it happened: the overflow policy dropped it, it expired, an
      operator cleared the spool, another process settled it. Nothing is written. Queued
      again, a dropped event would come back and take another entry's place (perhaps one also
      in flight, whose spill would do the same): each drop counted again, the spool no longer
      holding the newest events, ``dropped`` larger than the events read.
    * ``append``: a durable event and free room: it takes a new entry.
    * ``full``: a durable event and no free room: it never takes another entry's place, whatever
      the policy (the spool is shared; an entry may be a hook's edit whose only record it is).

    So a live event enters the spool once and leaves it once: each is dropped (or expires) at
    most once. The race: the drop is another write transaction (this process reading more
    input, or a hook) at any time between the event's read and its spill. LMDB serialises
    writers and the spill looks in its own transaction, so it sees the entry either before the
    drop (it is marked; the drop, if it comes, takes it later, counted once) or after (gone:
    nothing to undo).
    """
    if not durable:
        return "gone"
    return "append" if size < bound else "full"
