"""What one run did: the counts every collaborator adds to, returned by ``Pipeline.run``."""

from __future__ import annotations

import msgspec


class RunSummary(msgspec.Struct, kw_only=True):
    read: int = 0
    unchanged: int = 0
    delivered: int = 0
    already_existed: int = 0
    retried: int = 0
    spilled: int = 0
    # Why events went (back) to the spool: spill reason (circuit_open, retries_exhausted,
    # not_retryable, parent_missing, overloaded, backlog) -> events. A drain that leaves events
    # says why from it.
    spilled_by_reason: dict[str, int] = msgspec.field(default_factory=dict)
    replayed: int = 0
    dead_lettered: int = 0
    expired: int = 0
    left_in_spool: int = 0
    seconds: float = 0.0
    # Stopped while a source waited for room in the full spool (overflow_policy "block"): the
    # input it could not store was left unread (stdin) or is found again at the next start (watch).
    stopped_waiting_for_room: bool = False
    # A durable source (an archive) stopped reading, not the user: the spool full (whatever the
    # overflow policy: an archive's events never make it drop one) and the service unavailable
    # (circuit open), waiting had no prospect; the rest is unread.
    gave_up_on_full_spool: bool = False
    # Events the spool's overflow policy dropped while the run ran (drop_oldest / drop_newest
    # with the spool full), by any process on the data directory: the delta of the shared
    # ``spool.dropped.overflow_*`` counters over the run.
    dropped: int = 0
    # Events this run delivered though their spool entry had gone while they were in flight
    # (dropped by the overflow policy, or expired): not lost, only without a durable copy for a
    # while. A burst larger than the spool, read and delivered at once, drops and delivers the same.
    delivered_anyway: int = 0
    # Events neither delivered nor kept: the store write that was their only record (an archive
    # event spilled to the spool, or moved to the dead letter) failed (the store full, a disk
    # error). Reading stopped at the first; ``not_kept_because`` says why.
    not_kept: int = 0
    not_kept_because: str = ""
