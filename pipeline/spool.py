"""The spool: the one durable FIFO of events that are not yet acknowledged by the sink.

Every event from an ephemeral source (watch, stdin, hook) enters the spool in the same write
transaction that assigns its version, before it enters the Rx graph; it leaves only when the
sink acknowledged it (or it was dead-lettered). A crash at any point therefore loses nothing:
on restart the backlog is replayed oldest first, and idempotent ids make redelivery harmless.

Keys are big-endian u64 sequence numbers (FIFO order); ``spool_ids`` maps event_id → seq so an
acknowledgement can find its entry and an event already queued is not queued twice.
"""

from __future__ import annotations

from collections.abc import Iterable

import lmdb
import msgspec

from pipeline.events import PatternEvent
from pipeline.store import Store, from_u64, u64


class SpoolEntry(msgspec.Struct, array_like=True):
    enqueued_at: float
    event: PatternEvent


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpoolEntry)


class Spool:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._db = store.db("spool")
        self._ids = store.db("spool_ids")

    def put(self, txn: lmdb.Transaction, events: Iterable[PatternEvent], now: float) -> list[PatternEvent]:
        """Queue ``events`` inside the caller's write txn; return those that were not already queued."""
        queued: list[PatternEvent] = []
        for ev in events:
            eid = ev.event_id.encode()
            if txn.get(eid, db=self._ids) is not None:
                continue
            seq = u64(self.store.next_seq(txn, "spool"))
            if not txn.put(seq, _encoder.encode(SpoolEntry(now, ev)), db=self._db, overwrite=False):
                raise RuntimeError(f"spool sequence {from_u64(seq)} already used")
            txn.put(eid, seq, db=self._ids)
            queued.append(ev)
        return queued

    def enqueue(self, events: Iterable[PatternEvent], now: float) -> list[PatternEvent]:
        events = list(events)
        return self.store.write(lambda txn: self.put(txn, events, now))

    def remove(self, txn: lmdb.Transaction, event_ids: Iterable[str]) -> int:
        removed = 0
        for eid in event_ids:
            key = eid.encode()
            seq = txn.pop(key, db=self._ids)
            if seq is not None and txn.delete(seq, db=self._db):
                removed += 1
        return removed

    def ack(self, event_ids: Iterable[str]) -> int:
        """Remove acknowledged events (one write txn). Unknown ids are ignored: acks are idempotent."""
        ids = list(event_ids)
        if not ids:
            return 0
        return self.store.write(lambda txn: self.remove(txn, ids))

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
        batch = self.read_batch(0, 1)
        return batch[0][1].enqueued_at if batch else None
