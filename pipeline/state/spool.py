"""The spool: the one durable FIFO of events that are not yet acknowledged by the sink.

Every event from an ephemeral source (watch, stdin, hook) enters the spool in the same write
transaction that assigns its version, before it enters the Rx graph; it leaves only when the
sink acknowledged it (or it was dead-lettered, dropped by the overflow policy, or expired).
A crash at any point therefore loses nothing: the backlog is replayed oldest first, and
idempotent ids make redelivery harmless.

Keys are big-endian u64 sequence numbers (FIFO order); ``spool_ids`` maps event_id → seq so an
acknowledgement can find its entry and an event already queued is not queued twice.
The bound (``pattern_tracking.cache_size``) and overflow policy are applied per event at put time;
a spill keeps what is still queued and never queues again a live event that has left
(operators/overflow.py holds the rules). Every drop and expiry is counted in the shared counters,
once per event.
"""

from __future__ import annotations

import json
import time
from collections import namedtuple

import lmdb

from pattern_tracker.operators.overflow import is_expired, overflow_plan, spill_action
from pattern_tracker.core.counters import Counters
from pattern_tracker.core.store import Store, from_u64, u64

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable
    from typing import Any, NamedTuple

    from pattern_tracker.operators.overflow import OverflowPolicy
    from pattern_tracker.model.events import PatternEvent
    from pattern_tracker.model.spool_codec import SpoolEntry, SpoolStats

    # An event is a PatternEvent (msgspec side) or its field dict (the hook, standard library only).
    Event = Any

    class SpoolLimits(NamedTuple):
        bound: int = 1000
        policy: OverflowPolicy = "drop_oldest"
        ttl: float = 3600.0

    class Quarantined(NamedTuple):
        """A quarantined entry as an operator sees it (never its bytes): its size, and when and why
        it was quarantined (None for an entry quarantined before that was recorded)."""

        seq: int
        size: int
        at: float | None
        why: str | None

else:
    SpoolLimits = namedtuple("SpoolLimits", "bound policy ttl", defaults=(1000, "drop_oldest", 3600.0))
    Quarantined = namedtuple("Quarantined", "seq size at why")

# The quarantine's notes, one per entry, in the ``state`` database (the ``quarantine`` database
# holds only the entries' bytes): _NOTE + u64 seq -> JSON {"at": epoch seconds, "why": the decode
# error's first line}.
_NOTE = b"quarantine:"
# The counters of the events the overflow policy drops: ``spool.dropped.overflow_newest|oldest``.
_OVERFLOW_DROPPED = "spool.dropped.overflow_"
_WHY_CHARS = 500


class SpoolFull(Exception):
    """The spool is at its bound and the overflow policy is ``block``: the caller must wait."""


def never_blocking(limits: SpoolLimits) -> SpoolLimits:
    """The limits for a caller that must never wait (the hook, the facade): ``block`` becomes
    ``drop_newest`` — counted and logged like any drop."""
    return limits._replace(policy="drop_newest") if limits.policy == "block" else limits


def _warn(message: str) -> None:
    import logging  # only when there is something to say: the hook does not pay for logging

    logging.getLogger("pattern_tracker.state.spool").warning(message)


def _event_id(ev: Event) -> str:
    return ev["event_id"] if isinstance(ev, dict) else ev.event_id


def _encode(ev: Event, now: float, spilled: bool = False) -> bytes:
    if isinstance(ev, dict):
        return json.dumps([now, ev, spilled], separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    from pattern_tracker.model.spool_codec import SpoolEntry, encoder

    return encoder.encode(SpoolEntry(now, ev, spilled))


def _head(raw: bytes) -> tuple[float, str] | None:
    """(enqueued_at, event_id) of a stored entry, with the standard library only; None when it
    cannot be read (whoever meets it in a write moves it to the quarantine)."""
    try:
        doc = json.loads(raw)
        return float(doc[0]), str(doc[1]["event_id"])
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return None


_UNREADABLE = "the entry's head (enqueued_at, event_id) cannot be read"


class Spool:
    def __init__(self, store: Store, limits: SpoolLimits | None = None, warn: Callable[[str], None] = _warn) -> None:
        self.store = store
        self.limits = limits or SpoolLimits()
        self.counters = Counters(store)
        self.warn = warn
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
            self.counters.add(txn, {_OVERFLOW_DROPPED + "newest": 1}, now)
            self.warn(f"spool full ({size} events): newest event dropped (overflow_policy drop_newest)")
            return False
        if plan.drop_oldest:
            dropped = self._pop_oldest(txn, plan.drop_oldest, now)
            if dropped:  # none when the room was made by quarantining an unreadable entry
                self.counters.add(txn, {_OVERFLOW_DROPPED + "oldest": len(dropped)}, now)
                self.warn(f"spool full ({size} events): oldest event(s) {', '.join(dropped)} dropped "
                          "(overflow_policy drop_oldest)")
        return True

    def queued(self, txn: lmdb.Transaction, event_id: str) -> bool:
        return txn.get(event_id.encode(), db=self._ids) is not None

    def append(self, txn: lmdb.Transaction, ev: Event, now: float) -> None:
        """Queue one admitted event inside the caller's write txn."""
        seq = u64(self.store.next_seq(txn, "spool"))
        if not txn.put(seq, _encode(ev, now), db=self._db, overwrite=False):
            raise RuntimeError(f"spool sequence {from_u64(seq)} already used")
        txn.put(_event_id(ev).encode(), seq, db=self._ids)

    def put(self, txn: lmdb.Transaction, events: Iterable[Event], now: float) -> list[Event]:
        """Queue ``events`` (not already queued, admitted by the policy); return those queued."""
        out: list[Event] = []
        for ev in events:
            if self.queued(txn, _event_id(ev)) or not self.admit(txn, now):
                continue
            self.append(txn, ev, now)
            out.append(ev)
        if out:
            self.counters.add(txn, {"spool.entered": len(out)}, now)
        return out

    def enqueue(self, events: Iterable[Event], now: float) -> list[Event]:
        events = list(events)
        return self.store.write(lambda txn: self.put(txn, events, now))

    def _pop_oldest(self, txn: lmdb.Transaction, n: int, now: float) -> list[str]:
        """Drop the ``n`` oldest entries; one that cannot be read goes to the quarantine instead
        (making the same room: its bytes are kept, not dropped)."""
        dropped: list[str] = []
        with txn.cursor(db=self._db) as cur:
            for _ in range(n):
                if not cur.first():
                    break
                key, raw = bytes(cur.key()), bytes(cur.value())
                head = _head(raw)
                cur.delete()
                if head is None:
                    self._to_quarantine(txn, key, raw, _UNREADABLE, now)
                else:
                    txn.delete(head[1].encode(), db=self._ids)
                    dropped.append(head[1])
        return dropped

    def mark_spilled(self, txn: lmdb.Transaction, events: Iterable[PatternEvent], reason: str, now: float,
                     durable: Container[str] = ()) -> int:
        """Keep ``events`` for later, by ``spill_action``: those still queued are marked, those of
        ``durable`` (ids of events whose source keeps them: an archive) are queued in free room
        only, and a live event no longer queued is not queued again (it was dropped, expired or
        settled since it was read: final, and counted then). Each event's first spill is counted
        once (``spool.spilled.<reason>``) so the hit rate is per event, not per attempt. A durable
        event and no free room: SpoolFull (the caller's transaction is aborted). Returns how
        many of ``events`` the spool now holds (what the spill's log line says was kept)."""
        from pattern_tracker.model.spool_codec import decoder, encoder

        first = kept = 0
        bound = self.limits.bound
        for ev in events:
            seq = txn.get(ev.event_id.encode(), db=self._ids)
            if seq is None:
                size = txn.stat(self._db)["entries"]
                action = spill_action(ev.event_id in durable, size, bound)
                if action == "gone":
                    continue
                if action == "full":
                    raise SpoolFull(f"the spool is full ({size} of cache_size {bound} events)")
                self.append(txn, ev, now)
                self.counters.add(txn, {"spool.entered": 1}, now)
                seq = txn.get(ev.event_id.encode(), db=self._ids)
            kept += 1
            entry = decoder.decode(txn.get(seq, db=self._db))
            if not entry.spilled:
                entry.spilled = True
                txn.put(seq, encoder.encode(entry), db=self._db)
                first += 1
        if first:
            self.counters.add(txn, {f"spool.spilled.{reason}": first}, now)
        return kept

    def remove(self, txn: lmdb.Transaction, event_ids: Iterable[str]) -> int:
        """Remove the entries of ``event_ids`` still queued; returns how many there were."""
        removed = 0
        for eid in event_ids:
            seq = txn.pop(eid.encode(), db=self._ids)
            if seq is not None and txn.delete(seq, db=self._db):
                removed += 1
        return removed

    def acknowledge(self, txn: lmdb.Transaction, event_ids: Iterable[str], now: float) -> int:
        """Remove the entries of events the sink acknowledged, counting those removed
        (``spool.acked``) in the same transaction. An event dropped or expired while its delivery
        was under way has no entry left: it left the spool then, and was counted then."""
        removed = self.remove(txn, event_ids)
        if removed:
            self.counters.add(txn, {"spool.acked": removed}, now)
        return removed

    def letter(self, txn: lmdb.Transaction, event_ids: Iterable[str], now: float) -> int:
        """Remove the entries of events moved to the dead letter (in the caller's transaction, the
        one that writes the letters), counting those removed (``spool.lettered``). Counted here,
        not from the dead letter's size: an event dropped while in flight leaves no entry, and
        letters are purged or replayed into the spool later (entering it again)."""
        removed = self.remove(txn, event_ids)
        if removed:
            self.counters.add(txn, {"spool.lettered": removed}, now)
        return removed

    def ack(self, event_ids: Iterable[str]) -> int:
        """Remove acknowledged events (one write txn). Unknown ids are ignored: acks are idempotent."""
        ids = list(event_ids)
        if not ids:
            return 0
        return self.store.write(lambda txn: self.acknowledge(txn, ids, time.time()))

    def expire(self, now: float) -> list[str]:
        """Remove entries older than the TTL (oldest first); count and log them. Returns their ids."""
        ttl = self.limits.ttl

        def txn_fn(txn: lmdb.Transaction) -> list[str]:
            doomed: list[tuple[bytes, str]] = []
            unreadable: list[tuple[bytes, bytes]] = []
            with txn.cursor(db=self._db) as cur:
                for key, value in cur:
                    head = _head(value)
                    if head is None:  # it would stop every expiry, so every drain: quarantined
                        unreadable.append((bytes(key), bytes(value)))
                        continue
                    if not is_expired(head[0], now, ttl):
                        break
                    doomed.append((bytes(key), head[1]))
            for key, raw in unreadable:
                txn.delete(key, db=self._db)
                self._to_quarantine(txn, key, raw, _UNREADABLE, now)
            for key, eid in doomed:
                txn.delete(key, db=self._db)
                txn.delete(eid.encode(), db=self._ids)
            if doomed:
                self.counters.add(txn, {"spool.expired": len(doomed)}, now)
            return [eid for _, eid in doomed]

        gone = self.store.write(txn_fn)
        if gone:
            self.warn(f"spool: {len(gone)} event(s) expired after {ttl:.0f}s undelivered (cache_ttl)")
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
            self.warn(f"spool cleared by operator: {n} event(s) dropped")
        return n

    # -- reading -----------------------------------------------------------------------------

    def last_seq(self) -> int:
        def read(txn: lmdb.Transaction) -> int:
            with txn.cursor(db=self._db) as cur:
                return from_u64(cur.key()) if cur.last() else 0

        return self.store.read(read)

    def read_batch(self, after_seq: int, limit: int, upto_seq: int | None = None) -> list[tuple[int, SpoolEntry]]:
        """Up to ``limit`` entries with after_seq < seq (≤ upto_seq), oldest first."""
        import msgspec

        from pattern_tracker.model.spool_codec import decoder

        out: list[tuple[int, SpoolEntry]] = []
        for seq, raw in self.store.scan_seq("spool", after_seq, limit, upto_seq):
            try:
                out.append((seq, decoder.decode(raw)))
            except msgspec.DecodeError as exc:
                self._quarantine(seq, raw, str(exc))
        return out

    def _quarantine(self, seq: int, raw: bytes, why: str) -> None:
        """An entry that cannot be decoded must not stop every drain: it moves, bytes intact, to the
        ``quarantine`` database (counted, logged) and its id mapping is dropped."""
        key = u64(seq)

        def txn_fn(txn: lmdb.Transaction) -> bool:
            if txn.get(key, db=self._db) is None:
                return False
            txn.delete(key, db=self._db)
            self._to_quarantine(txn, key, raw, why, time.time())
            return True

        self.store.write(txn_fn)

    def _to_quarantine(self, txn: lmdb.Transaction, key: bytes, raw: bytes, why: str, now: float) -> None:
        """Keep a spool entry's bytes (already removed from the spool by the caller, in ``txn``) in
        the ``quarantine`` database, with a note of when and why in the ``state`` database
        (``cache quarantine list``); drop its id mapping; count and log it."""
        note = json.dumps({"at": now, "why": why.strip().split("\n", 1)[0][:_WHY_CHARS]}).encode()
        txn.put(key, raw, db=self.store.db("quarantine"))
        txn.put(_NOTE + key, note, db=self.store.db("state"))
        with txn.cursor(db=self._ids) as cur:
            stale = [k for k, v in cur if v == key]
        for k in stale:
            txn.delete(k, db=self._ids)
        self.counters.add(txn, {"spool.quarantined": 1}, now)
        self.warn(f"spool entry {from_u64(key)} cannot be decoded ({why[:120]}): moved to the quarantine database")

    def quarantine_size(self) -> int:
        return self.store.entries("quarantine")

    def quarantined(self, seqs: Iterable[int] | None = None) -> list[Quarantined]:
        """The quarantined entries (every one, oldest first; or those of ``seqs`` still there, in
        that order) with their notes; never their bytes."""
        quarantine, state = self.store.db("quarantine"), self.store.db("state")

        def row(txn: lmdb.Transaction, key: bytes, raw: Any) -> Quarantined:
            at = why = None
            note = txn.get(_NOTE + key, db=state)
            if note is not None:
                try:
                    doc = json.loads(bytes(note))
                    at, why = float(doc["at"]), str(doc["why"])
                except (ValueError, TypeError, KeyError):
                    pass  # an unreadable note: shown as unknown, the entry itself is intact
            return Quarantined(from_u64(key), len(raw), at, why)

        def read(txn: lmdb.Transaction) -> list[Quarantined]:
            if seqs is None:
                with txn.cursor(db=quarantine) as cur:
                    return [row(txn, bytes(key), raw) for key, raw in cur]
            found = ((u64(seq), txn.get(u64(seq), db=quarantine)) for seq in seqs)
            return [row(txn, key, raw) for key, raw in found if raw is not None]

        return self.store.read(read, buffers=True)  # sizes only: no copy of the bytes

    def quarantined_bytes(self, seqs: Iterable[int]) -> list[tuple[int, bytes]]:
        """(seq, raw bytes) of the quarantined entries of ``seqs`` still there, in that order."""
        quarantine = self.store.db("quarantine")

        def read(txn: lmdb.Transaction) -> list[tuple[int, bytes]]:
            found = ((seq, txn.get(u64(seq), db=quarantine)) for seq in seqs)
            return [(seq, raw) for seq, raw in found if raw is not None]

        return self.store.read(read)

    def purge_quarantined(self, seqs: Iterable[int], now: float) -> int:
        """Operator action: delete the quarantined entries of ``seqs`` and their notes for good
        (one write txn); counted as ``spool.quarantine_purged`` and logged. Returns how many."""
        quarantine, state = self.store.db("quarantine"), self.store.db("state")
        keys = [u64(seq) for seq in seqs]

        def txn_fn(txn: lmdb.Transaction) -> int:
            n = 0
            for key in keys:
                n += bool(txn.delete(key, db=quarantine))
                txn.delete(_NOTE + key, db=state)
            self.counters.add(txn, {"spool.quarantine_purged": n}, now)
            return n

        n = self.store.write(txn_fn)
        if n:
            self.warn(f"quarantine purged by operator: {n} undecodable spool entr{'y' if n == 1 else 'ies'} deleted")
        return n

    def size(self) -> int:
        return self.store.entries("spool")

    def overflow_drops(self, since: float) -> int:
        """Events the overflow policy has dropped (``spool.dropped.overflow_*``), by every process
        on the data directory, counted in buckets from the one holding ``since`` on."""
        return sum(self.counters.totals(since, prefix=_OVERFLOW_DROPPED).values())

    def oldest_enqueued_at(self) -> float | None:
        """When the oldest readable entry was queued (an unreadable one before it waits for the
        next write that meets it to be quarantined; reading here writes nothing)."""
        for _seq, raw in self.store.scan_seq("spool", 0, 16):
            head = _head(raw)
            if head is not None:
                return head[0]
        return None

    def stats(self, now: float, since: float | None = None) -> SpoolStats:
        from pattern_tracker.model.spool_codec import SpoolStats
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
            lettered=c.get("spool.lettered", 0),
            expired=c.get("spool.expired", 0),
            unreadable=c.get("spool.quarantined", 0),
            dropped=sum(dropped.values()),
            dropped_by_reason=dropped,
            hit_rate=(c.get("spool.replayed_ok", 0) / spilled) if spilled else None,
        )
