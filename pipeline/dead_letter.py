"""Dead letters: events the service (or local validation) refused for good, kept with the reason.

Never retried automatically; listed, shown, replayed after a fix or purged by an operator.
"""

from __future__ import annotations

from collections.abc import Iterable

import lmdb
import msgspec

from pipeline.events import PatternEvent
from pipeline.store import Store, u64


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
        self._db = store.db("dead_letter")

    def put(self, txn: lmdb.Transaction, letters: Iterable[DeadLetter]) -> int:
        n = 0
        for letter in letters:
            seq = u64(self.store.next_seq(txn, "dead_letter"))
            txn.put(seq, _encoder.encode(letter), db=self._db)
            n += 1
        return n

    def list(self, limit: int = 100, after: int = 0) -> list[tuple[int, DeadLetter]]:
        return [(seq, _decoder.decode(raw)) for seq, raw in self.store.scan_seq("dead_letter", after, limit)]

    def size(self) -> int:
        return self.store.entries("dead_letter")
