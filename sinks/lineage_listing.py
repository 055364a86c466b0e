"""One page of tracked files: the walk behind ``LineageStore.list_files``.

``lineage_paths`` (:mod:`pattern_tracker.sinks.lineage_layout`) holds one key per file, K(file_path),
in path order (UTF-8 byte order is code-point order); its value F(file_path) leads to the file's
nodes in ``lineage_keys`` (``lineage_layout.file_seqs``). So a page is a cursor walk that starts
just past ``after`` (:func:`_start_key`), counts each shown file's nodes and reads two of them
(its oldest and newest): a page reads no more of the store than it shows.

Paths too long for a key are kept under ``\\x01`` + a digest (``key_of``), which sorts before
every readable key and says nothing of the path: those few files are read up front (the node
holds the real path) and merged into the walk in path order.

Search (a case-insensitive substring of the path) has to look at every file past ``after``.
:class:`FileListing` keeps the paths, lower-cased, in memory (a few MB at 100k files), stamped
with the store's node sequence and the number of files: a search is a loop over that list
(~5 ms at 100k files). The store's own writes hand it their files (``LineageStore.track_many``
calls :meth:`FileListing.written`), so in serve, the one writer, it stays current; a write by
another process on the same data directory changes the stamp unannounced and the next search
rebuilds the list, at about the cost of one walk.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

import lmdb
import msgspec
from pattern_tracker.sinks.lineage_contract import FilesPage
from pattern_tracker.sinks.lineage_layout import (
    SEQ_KEY,
    LineageDbs,
    NodeHead,
    file_seqs,
    load,
)

__all__ = ["MAX_LIMIT", "FileListing", "edit_time"]

MAX_LIMIT = 1000  # a page never holds more files than this, whatever is asked
_HASHED = b"\x01"


class _Oldest(NodeHead, array_like=True, gc=False):
    """A stored node decoded as far as its ``created_at`` and ``file_path`` (the rest is skipped)."""

    created_at: str
    file_path: str | None


_oldest_decoder = msgspec.msgpack.Decoder(_Oldest)


class _Entries(NamedTuple):
    """One file's nodes: how many, and the seqs (u64 bytes) of its oldest and newest."""

    count: int
    first: bytes
    last: bytes


class _Names:
    """The distinct readable file keys in index order, their paths lower-cased, and the store's
    state they were read at (``stamp``)."""

    def __init__(self, stamp: tuple[bytes | None, int], keys: list[bytes], lowered: list[str] | None = None) -> None:
        self.stamp = stamp
        self.keys = keys
        self.lowered = lowered if lowered is not None else [_lower(k) for k in keys]

    def plus(self, stamp: tuple[bytes | None, int], new: set[bytes]) -> _Names:
        """A copy holding ``new`` keys too (readers may be iterating this one)."""
        keys, lowered = list(self.keys), list(self.lowered)
        for key in sorted(new):
            if key.startswith(_HASHED):
                continue
            i = bisect.bisect_left(keys, key)
            if i == len(keys) or keys[i] != key:
                keys.insert(i, key)
                lowered.insert(i, _lower(key))
        return _Names(stamp, keys, lowered)

    def matching(self, needle: str, start: bytes) -> Iterator[bytes]:
        """The keys from ``start`` on whose path holds ``needle`` (lower-cased)."""
        keys, lowered = self.keys, self.lowered
        for i in range(bisect.bisect_left(keys, start), len(keys)):
            if needle in lowered[i]:
                yield keys[i]


class FileListing:
    """Pages of tracked files over one store (one per ``LineageStore``): holds the search's
    in-memory list of paths between calls. Safe across threads: a list is never changed, only
    replaced whole. The store tells it what its own writes added (:meth:`written`), so while this
    process is the only writer the list is never rebuilt; another process's write is seen by the
    stamp and costs one rebuild."""

    def __init__(self) -> None:
        self._names: _Names | None = None
        self._lock = threading.Lock()

    def keeps_paths(self) -> bool:
        """Is there a list for writes to keep current (has anyone searched)?"""
        return self._names is not None

    def written(self, before: tuple[bytes | None, int], after: tuple[bytes | None, int], files: set[bytes]) -> None:
        """A write transaction of this process committed: it moved the store from stamp ``before``
        to ``after`` and wrote index entries for ``files`` (file keys). A list that was current
        at ``before`` takes them in; any other is left to be rebuilt."""
        with self._lock:
            names = self._names
            if names is not None and names.stamp == before:
                self._names = names.plus(after, files)

    def page(self, txn: lmdb.Transaction, dbs: LineageDbs, search: str | None = None, after: str | None = None,
             limit: int = 50) -> FilesPage:
        """Up to ``limit`` files whose path sorts past ``after`` (and holds ``search``), in path
        order; ``next`` is the last path shown when more follow, else None (see ``FilesPage``)."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        needle = search.lower() if search else None
        start = _start_key(after)
        hashed = [h for h in _hashed_files(txn, dbs)
                  if (after is None or h[0] > after) and (needle is None or needle in h[0].lower())]
        hashed.reverse()  # popped from the end, smallest path first
        files: list[dict[str, Any]] = []
        with txn.cursor(db=dbs.paths) as scan:
            if needle is None:
                pairs: Iterator[tuple[bytes, bytes | None]] = scan.iternext() if scan.set_range(start) else iter(())
            else:
                pairs = ((k, txn.get(k, db=dbs.paths)) for k in self._current(txn, dbs, scan).matching(needle, start))
            for fkey, fhash in pairs:
                entries = _entries(txn, dbs, bytes(fhash)) if fhash is not None else None
                if entries is None:
                    continue  # a list newer than this transaction: the file is not in its view
                path = fkey.decode("utf-8", "surrogatepass")
                while hashed and hashed[-1][0] < path:
                    if len(files) == limit:
                        return _page(files, more=True)
                    files.append(_summary(txn, dbs, *hashed.pop()))
                if len(files) == limit:
                    return _page(files, more=True)
                files.append(_summary(txn, dbs, path, entries))
        while hashed:
            if len(files) == limit:
                return _page(files, more=True)
            files.append(_summary(txn, dbs, *hashed.pop()))
        return _page(files, more=False)

    def _current(self, txn: lmdb.Transaction, dbs: LineageDbs, scan: lmdb.Cursor) -> _Names:
        """The list of paths as of ``txn``: the kept one while nothing was tracked since, else a new one."""
        stamp = (txn.get(SEQ_KEY, db=dbs.state), int(txn.stat(dbs.paths)["entries"]))
        names = self._names
        if names is None or names.stamp != stamp:
            keys = list(scan.iternext(keys=True, values=False)) if scan.set_range(b"\x02") else []
            names = _Names(stamp, keys)
            with self._lock:
                self._names = names
        return names


def _lower(key: bytes) -> str:
    return key.decode("utf-8", "surrogatepass").lower()


def _page(files: list[dict[str, Any]], *, more: bool) -> FilesPage:
    return {"files": files, "next": files[-1]["file_path"] if more and files else None}


def _start_key(after: str | None) -> bytes:
    """Where the walk of readable keys starts: the first key whose path sorts past ``after``.

    Readable keys are paths of at most 400 bytes with no NUL, so for ``t``, the first 400 bytes
    of ``after``, a path ``p`` sorts past ``after`` exactly when its key is at or past ``t + 0x00``
    (a longer ``after`` sorts past ``t`` itself; a readable path longer than ``t`` that starts
    with it cannot be: ``t`` is already 400 bytes). Holds for a hashed ``after`` too.
    """
    if after is None:
        return b"\x02"
    return max(after.encode("utf-8", "surrogatepass")[:400] + b"\x00", b"\x02")


def _entries(txn: lmdb.Transaction, dbs: LineageDbs, fhash: bytes) -> _Entries | None:
    """The nodes of file F ``fhash`` (:func:`file_seqs`): how many, oldest, newest (None: none in this view)."""
    seqs = file_seqs(txn, dbs, fhash)
    return _Entries(len(seqs), seqs[0], seqs[-1]) if seqs else None


def _hashed_files(txn: lmdb.Transaction, dbs: LineageDbs) -> list[tuple[str, _Entries]]:
    """The files kept under a digest (paths too long for a key), with their real paths, by path."""
    out: list[tuple[str, _Entries]] = []
    with txn.cursor(db=dbs.paths) as cur:
        if cur.set_range(_HASHED):
            for fkey, fhash in cur.iternext():
                if not fkey.startswith(_HASHED):
                    break
                entries = _entries(txn, dbs, bytes(fhash))
                oldest = load(txn, dbs, entries.first, _oldest_decoder) if entries is not None else None
                if entries is not None and oldest is not None and oldest.file_path:
                    out.append((oldest.file_path, entries))
    out.sort(key=lambda h: h[0])
    return out


def _summary(txn: lmdb.Transaction, dbs: LineageDbs, path: str, entries: _Entries) -> dict[str, Any]:
    """A ``FileSummary`` (see ``FilesPage``) from a file's oldest and newest nodes."""
    newest = load(txn, dbs, entries.last)
    if newest is None:  # an index entry without its node: never written so, show what is known
        return {"file_path": path, "language": None, "versions": entries.count, "first_seen": None,
                "last_seen": None, "last_edit": None, "last_session": None, "last_tool": None,
                "last_pattern_id": None, "last_pattern_version": None, "last_generation": None}
    oldest = newest if entries.last == entries.first else load(txn, dbs, entries.first, _oldest_decoder)
    first_seen = oldest.created_at if oldest is not None else None
    data = newest.pattern_data if isinstance(newest.pattern_data, dict) else {}
    session = data.get("session_id")
    return {
        "file_path": path,
        "language": newest.language,
        "versions": entries.count,
        "first_seen": first_seen,
        "last_seen": newest.created_at,
        "last_edit": edit_time(data.get("occurred_at")) or newest.created_at,
        "last_session": session if isinstance(session, str) and session else None,
        "last_tool": newest.tool_name,
        "last_pattern_id": newest.pattern_id,
        "last_pattern_version": newest.pattern_version,
        "last_generation": newest.generation,
    }


def edit_time(occurred_at: Any) -> str | None:
    """``pattern_data["occurred_at"]`` (epoch seconds) in ``created_at``'s format, or None."""
    if isinstance(occurred_at, bool) or not isinstance(occurred_at, (int, float)) or occurred_at <= 0:
        return None
    try:
        return datetime.fromtimestamp(occurred_at, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None
