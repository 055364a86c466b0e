"""The one LMDB environment per process and its named databases.

LMDB serialises writers across processes, so a write transaction is the lock that lets hook
processes, drainers and the running pipeline share the spool, circuit state, counters and
lineage. The map is sparse: it starts large and grows on ``MapFullError`` (up to
``max_map_size``); a process that sees another one's growth adopts it (``MapResizedError``).

Standard library and lmdb only: the hook process imports this and must start in tens of ms.
"""

from __future__ import annotations

import json
import os
import threading
from collections import namedtuple

import lmdb

from pattern_tracker.core.identity import content_hash as _content_hash
from pattern_tracker.core.identity import file_key, normalise_path, pattern_id_for

# Named databases. Later capabilities add theirs here so that every process opens the same set.
DB_NAMES: tuple[str, ...] = (
    "spool",  # u64 seq -> SpoolEntry (FIFO of unacknowledged events)
    "spool_ids",  # event_id -> u64 seq
    "dead_letter",  # u64 seq -> DeadLetter
    "state",  # small named records: counters, circuit breaker, leases, quarantine notes
    "metrics",  # cross-process counters and latency summaries
    "heads",  # file_key -> Head (latest version of each tracked file)
    "lineage_log",  # u64 node seq -> node (embedded lineage store: sinks.lineage_layout)
    "lineage_keys",  # newest version, node key -> u64 seq; edges; file entries (sinks.lineage_layout)
    "lineage_paths",  # file_path -> its hash in lineage_keys' file entries
    "lineage_nodes",  # layout 1 (pattern_id \0 version -> node): emptied by sinks.lineage_upgrade
    "lineage_latest",  # layout 1 (pattern_id -> node key): emptied by the upgrade
    "lineage_children",  # layout 1 (parent node key \0 u64 child seq -> child key): emptied by the upgrade
    "lineage_files",  # layout 1 (file_path \0 u64 node seq -> node key): emptied by the upgrade
    "archive",  # u64 seq -> recorded event
    "quarantine",  # u64 seq -> raw spool entry that could not be decoded (kept, never lost)
)

MIB = 1024 * 1024


class StoreError(Exception):
    """A store problem a user can act on (message names the path and what to do)."""


TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NamedTuple

    class Head(NamedTuple):
        """Latest known version of one file: what the next version's parent is (stored as JSON)."""

        version: int
        content_hash: str
        pattern_id: str
        path: str
        parent: str | None = None

else:
    Head = namedtuple("Head", "version content_hash pattern_id path parent", defaults=(None,))


def _encode_head(head: Head) -> bytes:
    return json.dumps(list(head), separators=(",", ":")).encode()


def _decode_head(raw: bytes) -> Head | None:
    """None for an unreadable record (an older format): the file's chain restarts at its next change."""
    try:
        return Head(*json.loads(raw))
    except (ValueError, TypeError):
        return None


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "pattern-tracker")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def from_u64(b: bytes) -> int:
    return int.from_bytes(b, "big")


class Store:
    """Process-wide handle on one data directory. Use ``Store.open``; never share across fork."""

    _open: dict[str, Store] = {}
    _open_lock = threading.Lock()

    def __init__(self, path: str, map_size: int, max_map_size: int) -> None:
        self.path = path
        self.max_map_size = max_map_size
        _make_private_dir(path)
        old_umask = os.umask(0o077)
        try:
            # readahead off: a page fault reads that page, not the ~128 KB around it. Reads here are
            # B-tree descents (random), and a lineage store of a million nodes is ~10 GB: with the
            # kernel's readahead, executing an event into one partly out of the page cache took
            # twice as long (62-73 vs 127-131 us; from a cold cache 76-82 vs 254-283 us). A store
            # the page cache holds whole: no difference (benchmarks.serve_ingest).
            self.env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=len(DB_NAMES) + 4,
                mode=0o700,
                max_readers=256,
                subdir=True,
                lock=True,
                readahead=False,
            )
        except lmdb.Error as exc:
            raise StoreError(f"cannot open store at {path}: {exc}") from exc
        finally:
            os.umask(old_umask)
        for name in ("data.mdb", "lock.mdb"):
            f = os.path.join(path, name)
            if os.path.exists(f) and os.stat(f).st_mode & 0o077:
                os.chmod(f, 0o600)
        # One writer at a time in this process, and the map grows only under it: LMDB refuses
        # set_mapsize while another thread of the process has a write transaction open (a put there
        # fails with EINVAL). Writers are serialised by LMDB anyway, so this costs no concurrency.
        self._write_lock = threading.RLock()
        with self.env.begin(write=True) as txn:  # one commit for all of them (the hook pays per process)
            self.dbs: dict[str, lmdb._Database] = {name: self.env.open_db(name.encode(), txn=txn) for name in DB_NAMES}

    @classmethod
    def open(cls, path: str | os.PathLike[str], map_size: int = 1024 * MIB, max_map_size: int = 64 * 1024 * MIB) -> Store:
        """The one Store for ``path`` in this process (LMDB forbids a second open of a path)."""
        key = os.path.realpath(os.fspath(path))
        with cls._open_lock:
            store = cls._open.get(key)
            if store is None:
                store = cls(key, map_size, max_map_size)
                cls._open[key] = store
            return store

    def close(self) -> None:
        with self._open_lock:
            self._open.pop(str(self.path), None)
        self.env.close()

    def db(self, name: str) -> lmdb._Database:
        return self.dbs[name]

    # -- transactions ----------------------------------------------------------------------

    def write(self, fn: Callable[[lmdb.Transaction], Any], buffers: bool = False) -> Any:
        """Run ``fn`` in one write transaction; on a full map grow it and redo the whole thing.
        ``buffers``: values read are memoryviews into the map, valid only until the next write
        (no copy, e.g. of a node's code, for writers that decode what they read at once)."""
        with self._write_lock:
            while True:
                try:
                    with self.env.begin(write=True, buffers=buffers) as txn:
                        return fn(txn)
                except lmdb.MapFullError:
                    self._grow()
                except lmdb.MapResizedError:
                    self.env.set_mapsize(0)

    def read(self, fn: Callable[[lmdb.Transaction], Any], buffers: bool = False) -> Any:
        """Run ``fn`` in one read transaction. ``buffers``: values are memoryviews into the map,
        valid only inside ``fn`` (no copy: for readers that decode at once)."""
        while True:
            try:
                with self.env.begin(write=False, buffers=buffers) as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                with self._write_lock:
                    self.env.set_mapsize(0)

    def _grow(self) -> None:
        with self._write_lock:
            current = self.env.info()["map_size"]
            if current >= self.max_map_size:
                raise StoreError(
                    f"store at {self.path} is full: map size {current // MIB} MiB reached "
                    f"storage.max_map_size ({self.max_map_size // MIB} MiB); raise it or clear the spool"
                )
            self.env.set_mapsize(min(current * 2, self.max_map_size))

    def map_size(self) -> int:
        return int(self.env.info()["map_size"])

    def verify(self) -> list[str]:
        """Walk every named database and decode what is structured; return the problems found."""
        problems: list[str] = []

        def walk(txn: lmdb.Transaction) -> None:
            for name in DB_NAMES:
                try:
                    with txn.cursor(db=self.dbs[name]) as cur:
                        for key, _value in cur:
                            if name in ("spool", "dead_letter", "archive") and len(key) != 8:
                                problems.append(f"{name}: key of {len(key)} bytes, expected 8")
                except lmdb.Error as exc:
                    problems.append(f"{name}: {exc}")

        self.read(walk)
        return problems

    # -- state records ---------------------------------------------------------------------

    def next_seq(self, txn: lmdb.Transaction, counter: str) -> int:
        """Monotonic sequence shared by every process (the write txn is the lock)."""
        key = b"seq:" + counter.encode()
        raw = txn.get(key, db=self.dbs["state"])
        n = from_u64(raw) + 1 if raw else 1
        txn.put(key, u64(n), db=self.dbs["state"])
        return n

    # -- sequence-keyed logs (spool, dead letter, archive) ------------------------------------

    def scan_seq(self, db_name: str, after: int, limit: int, upto: int | None = None,
                 decode: Callable[[memoryview], Any] | None = None) -> list[tuple[int, Any]]:
        """Up to ``limit`` (seq, value) of a u64-keyed database with after < seq (<= upto), in order.

        ``decode``: values are decoded inside the read transaction straight from the map
        (memoryviews, no copy) and the results returned instead of bytes.
        """
        db = self.dbs[db_name]

        def read(txn: lmdb.Transaction) -> list[tuple[int, Any]]:
            out: list[tuple[int, Any]] = []
            with txn.cursor(db=db) as cur:
                if not cur.set_range(u64(after + 1)):
                    return out
                for key, value in cur:
                    seq = from_u64(key)
                    if upto is not None and seq > upto:
                        break
                    out.append((seq, value if decode is None else decode(value)))
                    if len(out) >= limit:
                        break
            return out

        return self.read(read, buffers=decode is not None)

    def entries(self, db_name: str) -> int:
        db = self.dbs[db_name]
        return int(self.read(lambda txn: txn.stat(db)["entries"]))

    # -- versions --------------------------------------------------------------------------

    def next_version(self, txn: lmdb.Transaction, path: str, code: str) -> Head | None:
        """The head that ``code`` would become for ``path`` (None when it equals the latest version).

        Nothing is written: ``set_head`` records it once the event is safely queued.
        """
        path = normalise_path(path)
        chash = _content_hash(code)
        raw = txn.get(file_key(path).encode(), db=self.dbs["heads"])
        head = _decode_head(raw) if raw else None
        if head is not None and head.content_hash == chash:
            return None
        version = head.version + 1 if head else 1
        parent = head.pattern_id if head else None
        return Head(version, chash, pattern_id_for(path, version, chash), path, parent)

    def set_head(self, txn: lmdb.Transaction, head: Head) -> None:
        txn.put(file_key(head.path).encode(), _encode_head(head), db=self.dbs["heads"])

    def assign_version(self, txn: lmdb.Transaction, path: str, code: str) -> tuple[int, str | None, str] | None:
        """Next version of ``path`` for ``code``, recorded at once: (version, parent pattern_id, content hash)."""
        head = self.next_version(txn, path, code)
        if head is None:
            return None
        self.set_head(txn, head)
        return head.version, head.parent, head.content_hash

    def head(self, path: str) -> Head | None:
        key = file_key(path).encode()
        raw = self.read(lambda txn: txn.get(key, db=self.dbs["heads"]))
        return _decode_head(raw) if raw else None

    def heads_under(self, prefix: str) -> list[Head]:
        """Heads whose path starts with ``prefix`` (e.g. a notebook's cells, ``nb.ipynb#``), by path.

        A full scan: heads are keyed by a hash of the path. Only ``query`` uses it, not the hot path.
        """
        db = self.dbs["heads"]

        def run(txn: lmdb.Transaction) -> list[Head]:
            with txn.cursor(db=db) as cur:
                heads = [_decode_head(raw) for _key, raw in cur]
            return sorted((h for h in heads if h is not None and h.path.startswith(prefix)), key=lambda h: h.path)

        return self.read(run)


def _make_private_dir(path: str) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise StoreError(f"cannot create data directory {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise StoreError(f"data directory {path} is not writable by this user")
