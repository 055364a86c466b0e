"""The spool: the one durable FIFO of events that are not yet acknowledged by the sink.

Every event from an ephemeral source (watch, stdin, hook) enters the spool in the same write
transaction that assigns its version, before it enters the Rx graph; it leaves only when the
sink acknowledged it (or it was dead-lettered, dropped by the overflow policy, or expired).
A crash at any point therefore loses nothing: the backlog is replayed oldest first, and
idempotent ids make redelivery harmless.

Keys are big-endian u64 sequence numbers (FIFO order); ``spool_ids`` maps event_id → seq so an
acknowledgement can find its entry and an event already queued is not queued twice.
The bound (``pattern_tracking.cache_size``) and overflow policy are applied per event at put time
(operators/spill.py holds the rules); every drop and expiry is counted in the shared counters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import lmdb
import msgspec

from operators.spill import OverflowPolicy, is_expired, overflow_plan
from pipeline.counters import Counters
from pipeline.events import PatternEvent
from pipeline.store import Store, from_u64, u64

log = logging.getLogger("pattern_tracker.spool")


class SpoolEntry(msgspec.Struct, array_like=True):
    enqueued_at: float
    event: PatternEvent
    # Set the first time the event could not be delivered (counted once, for the hit rate).
    spilled: bool = False


class SpoolFull(Exception):
    """The spool is at its bound and the overflow policy is ``block``: the caller must wait."""


class SpoolLimits(msgspec.Struct, frozen=True):
    bound: int = 1000
    policy: OverflowPolicy = "drop_oldest"
    ttl: float = 3600.0


class SpoolStats(msgspec.Struct, kw_only=True):
    size: int
    bound: int
    oldest_age: float | None
    entered: int
    spilled: int
    replayed: int
    replayed_ok: int
    acked: int
    expired: int
    dropped: int
    dropped_by_reason: dict[str, int]
    hit_rate: float | None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpoolEntry)


class Spool:
    def __init__(self, store: Store, limits: SpoolLimits | None = None) -> None:
        self.store = store
        self.limits = limits or SpoolLimits()
        self.counters = Counters(store)
        self._db = store.db("spool")
        self._ids = store.db("spool_ids")

    # -- writing -----------------------------------------------------------------------------

    def admit(self, txn: lmdb.Transaction, now: float) -> bool:
        """Make room for one newcomer under the overflow policy; False = refuse it (drop_newest).

        Raises SpoolFull for ``block`` (the caller's transaction is then aborted).
        """
        size = txn.stat(self._db)["entries"]
        plan = overflow_plan(size, self.limits.bound, 1, self.limits.policy)
        if plan.block:
            raise SpoolFull(f"spool is full ({size}/{self.limits.bound} events)")
        if plan.drop_newest:
            self.counters.add(txn, {"spool.dropped.overflow_newest": 1}, now)
            log.warning("spool full (%d events): newest event dropped (overflow_policy drop_newest)", size)
            return False
        if plan.drop_oldest:
            dropped = self._pop_oldest(txn, plan.drop_oldest)
            self.counters.add(txn, {"spool.dropped.overflow_oldest": len(dropped)}, now)
            log.warning("spool full (%d events): oldest event %s dropped (overflow_policy drop_oldest)", size, ", ".join(dropped))
        return True

    def queued(self, txn: lmdb.Transaction, event_id: str) -> bool:
        return txn.get(event_id.encode(), db=self._ids) is not None

    def append(self, txn: lmdb.Transaction, ev: PatternEvent, now: float) -> None:
        """Queue one admitted event inside the caller's write txn."""
        seq = u64(self.store.next_seq(txn, "spool"))
        if not txn.put(seq, _encoder.encode(SpoolEntry(now, ev)), db=self._db, overwrite=False):
            raise RuntimeError(f"spool sequence {from_u64(seq)} already used")
        txn.put(ev.event_id.encode(), seq, db=self._ids)

    def put(self, txn: lmdb.Transaction, events: Iterable[PatternEvent], now: float) -> list[PatternEvent]:
        """Queue ``events`` (not already queued, admitted by the policy); return those queued."""
        out: list[PatternEvent] = []
        for ev in events:
            if self.queued(txn, ev.event_id) or not self.admit(txn, now):
                continue
            self.append(txn, ev, now)
            out.append(ev)
        if out:
            self.counters.add(txn, {"spool.entered": len(out)}, now)
        return out

    def enqueue(self, events: Iterable[PatternEvent], now: float) -> list[PatternEvent]:
        events = list(events)
        return self.store.write(lambda txn: self.put(txn, events, now))

    def _pop_oldest(self, txn: lmdb.Transaction, n: int) -> list[str]:
        dropped: list[str] = []
        with txn.cursor(db=self._db) as cur:
            while len(dropped) < n and cur.first():
                entry = _decoder.decode(cur.value())
                cur.delete()
                txn.delete(entry.event.event_id.encode(), db=self._ids)
                dropped.append(entry.event.event_id)
        return dropped

    def mark_spilled(self, txn: lmdb.Transaction, events: Iterable[PatternEvent], reason: str, now: float) -> int:
        """Keep ``events`` for later: queue those not queued yet, and count each event's first
        spill once (``spool.spilled.<reason>``) so the hit rate is per event, not per attempt."""
        first = 0
        for ev in events:
            seq = txn.get(ev.event_id.encode(), db=self._ids)
            if seq is None:
                if not self.admit(txn, now):
                    continue
                self.append(txn, ev, now)
                self.counters.add(txn, {"spool.entered": 1}, now)
                seq = txn.get(ev.event_id.encode(), db=self._ids)
            entry = _decoder.decode(txn.get(seq, db=self._db))
            if not entry.spilled:
                entry.spilled = True
                txn.put(seq, _encoder.encode(entry), db=self._db)
                first += 1
        if first:
            self.counters.add(txn, {f"spool.spilled.{reason}": first}, now)
        return first

    def remove(self, txn: lmdb.Transaction, event_ids: Iterable[str]) -> int:
        removed = 0
        for eid in event_ids:
            seq = txn.pop(eid.encode(), db=self._ids)
            if seq is not None and txn.delete(seq, db=self._db):
                removed += 1
        return removed

    def ack(self, event_ids: Iterable[str]) -> int:
        """Remove acknowledged events (one write txn). Unknown ids are ignored: acks are idempotent."""
        ids = list(event_ids)
        if not ids:
            return 0
        return self.store.write(lambda txn: self.remove(txn, ids))

    def expire(self, now: float) -> list[str]:
        """Remove entries older than the TTL (oldest first); count and log them. Returns their ids."""
        ttl = self.limits.ttl

        def txn_fn(txn: lmdb.Transaction) -> list[str]:
            doomed: list[tuple[bytes, str]] = []
            with txn.cursor(db=self._db) as cur:
                for key, value in cur:
                    entry = _decoder.decode(value)
                    if not is_expired(entry.enqueued_at, now, ttl):
                        break
                    doomed.append((key, entry.event.event_id))
            for key, eid in doomed:
                txn.delete(key, db=self._db)
                txn.delete(eid.encode(), db=self._ids)
            if doomed:
                self.counters.add(txn, {"spool.expired": len(doomed)}, now)
            return [eid for _, eid in doomed]

        gone = self.store.write(txn_fn)
        if gone:
            log.warning("spool: %d event(s) expired after %.0fs undelivered (cache_ttl)", len(gone), ttl)
        return gone

    def clear(self, now: float) -> int:
        """Operator action: drop every entry (counted as dropped by reason ``cleared``)."""

        def txn_fn(txn: lmdb.Transaction) -> int:
            n = txn.stat(self._db)["entries"]
            txn.drop(self._db, delete=False)
            txn.drop(self._ids, delete=False)
            self.counters.add(txn, {"spool.dropped.cleared": n}, now)
            return n

        n = self.store.write(txn_fn)
        if n:
            log.warning("spool cleared by operator: %d event(s) dropped", n)
        return n

    # -- reading -----------------------------------------------------------------------------

    def last_seq(self) -> int:
        def read(txn: lmdb.Transaction) -> int:
            with txn.cursor(db=self._db) as cur:
                return from_u64(cur.key()) if cur.last() else 0

        return self.store.read(read)

    def read_batch(self, after_seq: int, limit: int, upto_seq: int | None = None) -> list[tuple[int, SpoolEntry]]:
        """Up to ``limit`` entries with after_seq < seq (≤ upto_seq), oldest first."""
        return [(seq, _decoder.decode(raw)) for seq, raw in self.store.scan_seq("spool", after_seq, limit, upto_seq)]

    def size(self) -> int:
        return self.store.entries("spool")

    def oldest_enqueued_at(self) -> float | None:
        batch = self.store.scan_seq("spool", 0, 1)
        return _decoder.decode(batch[0][1]).enqueued_at if batch else None

    def stats(self, now: float, since: float | None = None) -> SpoolStats:
        c = self.counters.totals(since, prefix="spool.")
        dropped = {k.removeprefix("spool.dropped."): v for k, v in c.items() if k.startswith("spool.dropped.")}
        oldest = self.oldest_enqueued_at()
        spilled = sum(v for k, v in c.items() if k.startswith("spool.spilled."))
        return SpoolStats(
            size=self.size(),
            bound=self.limits.bound,
            oldest_age=(now - oldest) if oldest is not None else None,
            entered=c.get("spool.entered", 0),
            spilled=spilled,
            replayed=c.get("spool.replayed", 0),
            replayed_ok=c.get("spool.replayed_ok", 0),
            acked=c.get("spool.acked", 0),
            expired=c.get("spool.expired", 0),
            dropped=sum(dropped.values()),
            dropped_by_reason=dropped,
            hit_rate=(c.get("spool.replayed_ok", 0) / spilled) if spilled else None,
        )
