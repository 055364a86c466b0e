"""LMDB archives of pattern events: what `archive generate` writes, `archive record` records and
`replay` reads. An archive is a data directory of its own (the same store layout; events in the
``archive`` database keyed by u64 sequence, metadata in ``state``), so it is private (0700/0600),
grows on demand and can be read while it is written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator

import msgspec

from pattern_tracker.core import mapped_pages
from pattern_tracker.model.events import Decoded, PatternEvent
from pattern_tracker.core.store import MIB, Store, u64

META_KEY = b"archive_meta"
RELEASE_EVERY = 32 * MIB
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PatternEvent)


def _sized_event(raw: memoryview) -> tuple[int, PatternEvent]:
    return len(raw), _decoder.decode(raw)


class ArchiveError(Exception):
    """An archive that cannot be used, in one line."""


class Archive:
    def __init__(self, path: str, create: bool = False) -> None:
        if not create and not os.path.exists(os.path.join(path, "data.mdb")):
            raise ArchiveError(f"no archive at {path}")
        self.store = Store.open(path, map_size=256 * MIB)
        self._data_file = os.path.join(self.store.path, "data.mdb")
        self._db = self.store.db("archive")

    def close(self) -> None:
        self.store.close()

    def append(self, events: Iterable[PatternEvent]) -> int:
        """Add events at the end (one write transaction)."""
        batch = list(events)

        def txn_fn(txn) -> int:  # type: ignore[no-untyped-def]
            for ev in batch:
                if not txn.put(u64(self.store.next_seq(txn, "archive")), _encoder.encode(ev), db=self._db, append=True):
                    raise ArchiveError("archive sequence out of order")
            return len(batch)

        return self.store.write(txn_fn)

    def set_meta(self, meta: dict[str, object]) -> None:
        self.store.write(lambda txn: txn.put(META_KEY, json.dumps(meta).encode(), db=self.store.db("state")))

    def meta(self) -> dict[str, object]:
        raw = self.store.read(lambda txn: txn.get(META_KEY, db=self.store.db("state")))
        return json.loads(raw) if raw else {}

    def count(self) -> int:
        return self.store.entries("archive")

    def chunks(self, size: int = 1000, after: int = 0) -> Iterator[list[PatternEvent]]:
        """Events in order, ``size`` at a time (one read transaction per chunk), as ``Decoded``
        lists: the decoder held them to the event's schema.

        Events are decoded straight from the map (no intermediate bytes): for the large events of
        a replay, copying then decoding cost twice what decoding alone does. Every
        RELEASE_EVERY bytes read, the map's pages are given back (``mapped_pages``), so a
        replay's resident memory does not grow with the archive.
        """
        unreleased = 0
        while True:
            rows = self.store.scan_seq("archive", after, size, decode=_sized_event)
            if not rows:
                return
            after = rows[-1][0]
            unreleased += sum(nbytes for _, (nbytes, _ev) in rows)
            if unreleased >= RELEASE_EVERY:
                mapped_pages.release(self._data_file)
                unreleased = 0
            yield Decoded(ev for _, (_n, ev) in rows)

    def info(self) -> dict[str, object]:
        n = self.count()
        first = next(self.chunks(1), [])
        files: set[str] = set()
        sizes: list[int] = []
        languages: dict[str, int] = {}
        last_at = 0.0
        for chunk in self.chunks(5000):
            for ev in chunk:
                files.add(ev.file_path or "")
                sizes.append(len(ev.code.encode()))
                languages[ev.language or "unknown"] = languages.get(ev.language or "unknown", 0) + 1
                last_at = max(last_at, ev.occurred_at)
        sizes.sort()
        return {
            "path": self.store.path,
            "events": n,
            "files": len(files),
            "languages": dict(sorted(languages.items(), key=lambda kv: -kv[1])),
            "bytes_of_code": sum(sizes),
            "code_size_min": sizes[0] if sizes else 0,
            "code_size_median": sizes[len(sizes) // 2] if sizes else 0,
            "code_size_max": sizes[-1] if sizes else 0,
            "first_occurred_at": first[0].occurred_at if first else None,
            "last_occurred_at": last_at or None,
            "meta": self.meta(),
            "checked_at": time.time(),
        }
