"""Counters shared by every process on a data directory, in per-minute buckets of the store.

Short-lived hook processes and drainers cannot keep counters in memory; they add them here, in
the write transaction they are doing anyway, and ``metrics``/``health`` sum them over a window.
Key: name \\0 u64(minute); value: u64 count.
"""

from __future__ import annotations

from collections.abc import Mapping

import lmdb

from pattern_tracker.core.store import Store, from_u64, u64

BUCKET_SECONDS = 60


def _split(key: bytes) -> tuple[str, bytes]:
    """name \0 u64: the bucket is the last 8 bytes (it may itself hold NUL bytes)."""
    return key[:-9].decode(), key[-8:]


class Counters:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._db = store.db("metrics")

    def add(self, txn: lmdb.Transaction, counts: Mapping[str, int], now: float) -> None:
        """Add ``counts`` inside the caller's write transaction (zero counts are skipped)."""
        bucket = u64(int(now) // BUCKET_SECONDS)
        for name, n in counts.items():
            if n <= 0:
                continue
            key = name.encode() + b"\0" + bucket
            raw = txn.get(key, db=self._db)
            txn.put(key, u64((from_u64(raw) if raw else 0) + n), db=self._db)

    def bump(self, counts: Mapping[str, int], now: float) -> None:
        if any(n > 0 for n in counts.values()):
            self.store.write(lambda txn: self.add(txn, counts, now))

    def totals(self, since: float | None = None, prefix: str = "") -> dict[str, int]:
        """Sum of every counter (starting with ``prefix``) over buckets at or after ``since``."""
        first = int(since) // BUCKET_SECONDS if since is not None else 0
        out: dict[str, int] = {}

        def read(txn: lmdb.Transaction) -> None:
            with txn.cursor(db=self._db) as cur:
                if not cur.set_range(prefix.encode()):
                    return
                for key, value in cur:
                    name, bucket = _split(key)
                    if not name.startswith(prefix):
                        break
                    if from_u64(bucket) >= first:
                        out[name] = out.get(name, 0) + from_u64(value)

        self.store.read(read)
        return out

    def prune(self, older_than: float) -> int:
        """Delete buckets before ``older_than`` (metrics retention)."""
        limit = int(older_than) // BUCKET_SECONDS

        def txn_fn(txn: lmdb.Transaction) -> int:
            doomed = []
            with txn.cursor(db=self._db) as cur:
                for key, _ in cur:
                    if from_u64(_split(key)[1]) < limit:
                        doomed.append(key)
            for key in doomed:
                txn.delete(key, db=self._db)
            return len(doomed)

        return self.store.write(txn_fn)
