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
        out: dict[str, int] = {}
        for name, _, n in self._scan(0 if since is None else since, prefix):
            out[name] = out.get(name, 0) + n
        return out

    def by_bucket(self, since: float, prefix: str = "") -> dict[int, dict[str, int]]:
        """The counters (starting with ``prefix``) of each minute bucket at or after ``since``:
        bucket start (epoch seconds) -> name -> count. What the dashboard's history is refilled from."""
        out: dict[int, dict[str, int]] = {}
        for name, bucket, n in self._scan(since, prefix):
            out.setdefault(bucket * BUCKET_SECONDS, {})[name] = n
        return out

    def _scan(self, since: float, prefix: str) -> list[tuple[str, int, int]]:
        """(name, bucket, count) of the buckets at or after ``since``, one read transaction.

        Keys sort by name, then bucket (8 big-endian bytes, the order of the numbers), so a name's
        buckets before ``since`` are skipped with one seek: an hour's window over a day of buckets
        reads an hour of them. A ``since`` before 1970 (a window longer than the epoch is old) is
        every bucket."""
        start = u64(max(0, int(since)) // BUCKET_SECONDS)
        rows: list[tuple[str, int, int]] = []

        def read(txn: lmdb.Transaction) -> None:
            with txn.cursor(db=self._db) as cur:
                found = cur.set_range(prefix.encode())
                while found:
                    key = cur.key()
                    name, bucket = _split(key)
                    if not name.startswith(prefix):
                        break
                    if bucket < start:
                        found = cur.set_range(key[:-8] + start)
                        continue
                    rows.append((name, from_u64(bucket), from_u64(cur.value())))
                    found = cur.next()

        self.store.read(read)
        return rows

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
