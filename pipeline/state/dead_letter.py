"""Dead letters: events the service (or local validation) refused for good, kept with the reason.

Never retried automatically; listed, shown, replayed after a fix or purged by an operator
(``pattern-tracker dlq``). Every letter that enters is counted (``dead_letter.entered``), and
every purge (``dead_letter.purged``), in the shared counters, in the same write transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import lmdb
import msgspec

from pattern_tracker.core.counters import Counters
from pattern_tracker.model.events import PatternEvent
from pattern_tracker.core.store import Store, u64


class DeadLetter(msgspec.Struct, kw_only=True):
    event: PatternEvent
    reason: str
    http_status: int | None = None
    error_class: str | None = None
    stage: str = "deliver"
    failed_at: float = 0.0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DeadLetter)


class DeadLetters:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.counters = Counters(store)
        self._db = store.db("dead_letter")

    # -- writing -----------------------------------------------------------------------------

    def put(self, txn: lmdb.Transaction, letters: Iterable[DeadLetter], now: float | None = None) -> int:
        """Append ``letters`` inside the caller's write txn (counted as ``dead_letter.entered``)."""
        n = 0
        for letter in letters:
            seq = u64(self.store.next_seq(txn, "dead_letter"))
            txn.put(seq, _encoder.encode(letter), db=self._db)
            n += 1
        if n:
            self.counters.add(txn, {"dead_letter.entered": n}, time.time() if now is None else now)
        return n

    def remove(self, txn: lmdb.Transaction, seqs: Iterable[int]) -> int:
        """Delete the letters ``seqs`` inside the caller's write txn; returns how many existed."""
        return sum(1 for seq in seqs if txn.delete(u64(seq), db=self._db))

    def purge(self, seqs: Iterable[int] | None, now: float | None = None) -> int:
        """Operator action: delete the letters ``seqs`` (None: every letter), counted as
        ``dead_letter.purged``. One write transaction; returns how many were deleted."""
        wanted = None if seqs is None else list(seqs)
        when = time.time() if now is None else now

        def txn_fn(txn: lmdb.Transaction) -> int:
            if wanted is None:
                n = int(txn.stat(self._db)["entries"])
                txn.drop(self._db, delete=False)
            else:
                n = self.remove(txn, wanted)
            self.counters.add(txn, {"dead_letter.purged": n}, when)
            return n

        return self.store.write(txn_fn)

    # -- reading -----------------------------------------------------------------------------

    def get(self, seq: int, txn: lmdb.Transaction | None = None) -> DeadLetter | None:
        """The letter ``seq`` (None when there is none), read in ``txn`` or a read txn of its own."""
        key = u64(seq)
        raw = txn.get(key, db=self._db) if txn is not None else self.store.read(lambda t: t.get(key, db=self._db))
        return _decoder.decode(raw) if raw is not None else None

    def list(self, limit: int = 100, after: int = 0, upto: int | None = None) -> list[tuple[int, DeadLetter]]:
        """Up to ``limit`` (seq, letter) with after < seq (≤ upto), oldest first."""
        return [(seq, _decoder.decode(raw)) for seq, raw in self.store.scan_seq("dead_letter", after, limit, upto)]

    def last_seq(self) -> int:
        def read(txn: lmdb.Transaction) -> int:
            with txn.cursor(db=self._db) as cur:
                return int.from_bytes(cur.key(), "big") if cur.last() else 0

        return self.store.read(read)

    def size(self) -> int:
        return self.store.entries("dead_letter")
