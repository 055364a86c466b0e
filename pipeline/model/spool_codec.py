"""The msgspec side of the spool: typed entries and statistics (the spool module itself is
standard library only, so that the hook can write entries without importing msgspec).

An entry is stored as JSON ``[enqueued_at, event, spilled]``; the hook writes it with the
standard library, everything else reads and writes it with msgspec.
"""

from __future__ import annotations

import msgspec

from pattern_tracker.model.events import PatternEvent


class SpoolEntry(msgspec.Struct, array_like=True):
    enqueued_at: float
    event: PatternEvent
    # Set the first time the event could not be delivered (counted once, for the hit rate).
    spilled: bool = False


class SpoolStats(msgspec.Struct, kw_only=True):
    size: int
    bound: int
    oldest_age: float | None
    entered: int
    spilled: int
    replayed: int
    replayed_ok: int
    acked: int
    lettered: int  # entries moved to the dead letter
    expired: int
    unreadable: int  # entries moved to the quarantine (could not be decoded)
    dropped: int
    dropped_by_reason: dict[str, int]
    hit_rate: float | None


encoder = msgspec.json.Encoder()
decoder = msgspec.json.Decoder(SpoolEntry)
