"""The embedded lineage store: the Phase 4 service's node/edge semantics on LMDB.

:class:`LineageStore` implements the lineage store interface
(:class:`~pattern_tracker.sinks.lineage_contract.LineageBackend`) over the shared LMDB
environment. The parts, each readable alone:

* :mod:`~pattern_tracker.sinks.lineage_contract` — the interface, its errors, the operations;
* :mod:`~pattern_tracker.sinks.lineage_rules` — the track semantics (the Phase 4 API contract,
  docs/phase4-contract.md): validation, parent resolution, the node an event makes;
* :mod:`~pattern_tracker.sinks.lineage_layout` — records, keys and named dbs in LMDB;
* :mod:`~pattern_tracker.sinks.lineage_upgrade` — a store written in the earlier layout, upgraded when opened;
* :mod:`~pattern_tracker.sinks.lineage_walks` — ancestry, descendants, the nodes of a file;
* :mod:`~pattern_tracker.sinks.lineage_listing` — one page of tracked files (the UI's listing).

This module keeps the transactions: one write transaction per ``track_many``, one read
transaction per query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lmdb

from pattern_tracker.core.store import Store, from_u64, u64
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks import lineage_listing, lineage_upgrade, lineage_walks
from pattern_tracker.sinks.lineage_contract import (
    OPERATIONS,
    FilesPage,
    LineageValidationError,
    PatternNotFound,
    TrackResult,
    is_notebook,
    operation_for,
)
from pattern_tracker.sinks.lineage_layout import (
    FILE_MARK,
    IMPLIED,
    SEQ_KEY,
    LineageDbs,
    Node,
    NodeHead,
    file_hash,
    head_decoder,
    implied,
    key_of,
    load_key,
    node_encoder,
    newest_at,
    node_key,
    random_uuids,
    resolve,
)
from pattern_tracker.sinks.lineage_rules import (
    already_exists_data,
    batch_problem,
    created_data,
    new_node,
    now_iso,
    resolve_parents,
    static_check,
    usage_data,
)

__all__ = [
    "LineageStore",
    "LineageValidationError",
    "PatternNotFound",
    "is_notebook",
    "Node",
    "OPERATIONS",
    "operation_for",
    "random_uuids",
]


class LineageStore:
    """LMDB-backed pattern nodes and edges. Thread-safe as LMDB is; keep writes off the event loop."""

    def __init__(self, store: Store) -> None:
        lineage_upgrade.upgrade(store)  # a store written in layout 1: copied to layout 2 first (once)
        self.store = store
        self.dbs = LineageDbs.of(store)
        self.listing = lineage_listing.FileListing()
        self._known_paths: dict[str, tuple[bytes, bytes]] = {}  # path -> (K, F), known to be in lineage_paths
        self._heads = _Heads()

    # -- writes -------------------------------------------------------------------------------

    def validate_batch(self, reqs: Sequence[TrackRequest]) -> str | None:
        """The all-or-nothing static validation of a batch: the first violation's text, or None."""
        return batch_problem(reqs)

    def track(self, req: TrackRequest) -> dict[str, Any]:
        """Track one event in one write transaction; returns the ``data`` of the success body."""
        static_check(req)
        result = self.track_many([req])[0]
        if isinstance(result, LineageValidationError):
            raise result
        return result

    def track_many(
        self, reqs: Sequence[TrackRequest], processing_mode: str = "sequential", *,
        before_commit: Callable[[], None] | None = None,
    ) -> list[TrackResult]:
        """Track events in ONE write transaction, in list order (both modes), one result each.

        Every event is validated (statically, then against the state as of that point in the
        transaction) before anything of it is written, so one failure leaves the others intact.
        ``before_commit`` is called (in this thread) once every event is written, as the commit,
        which mostly waits on the disk, begins: a caller can schedule its own CPU work around it.
        """
        del processing_mode  # execution order is list order in both modes
        reqs = list(reqs)
        dbs = self.dbs
        listing = self.listing
        heads = self._heads
        committed: list[_Written] = []

        def run(txn: lmdb.Transaction) -> list[TrackResult]:
            raw = txn.get(SEQ_KEY, db=dbs.state)
            raw = bytes(raw) if raw is not None else None  # read as a memoryview (store.write buffers)
            seq0 = from_u64(raw) if raw else 0
            seq = seq0
            now = now_iso()  # one timestamp per transaction, like the service's NOW()
            made: dict[str, tuple[bytes, NodeHead]] = {}
            written = _Written(self._known_paths, listing.keeps_paths())
            before = (raw, int(txn.stat(dbs.paths)["entries"])) if written.files is not None else (None, 0)

            def newest(pattern_id: str) -> tuple[bytes, NodeHead] | None:
                """``made`` (pattern_id -> newest node written earlier in this transaction, which is
                what ``lineage_keys`` now names) answers without a lookup when a parent travels in
                the same batch as its child; otherwise the head of the node ``lineage_keys`` names."""
                found = made.get(pattern_id)
                return found if found is not None else heads.newest(txn, dbs, pattern_id)

            out: list[TrackResult] = []
            for req in reqs:
                try:
                    op = static_check(req)
                    data, created = self._execute(txn, req, op, seq + 1, now, made, newest, written)
                    if created:
                        seq += 1
                    out.append(data)
                except LineageValidationError as exc:
                    out.append(exc)
            if seq != seq0:
                txn.put(SEQ_KEY, u64(seq), db=dbs.state)
            committed.clear()  # the store may run this again (a map grown): only the last run counts
            if seq != seq0:
                written.stamps = (before, (u64(seq), int(txn.stat(dbs.paths)["entries"])))
                written.made = made
                committed.append(written)
            if before_commit is not None:
                before_commit()
            return out

        # buffers: what is read (a parent's node, ~9 KB) is decoded in place, not copied first
        results = self.store.write(run, buffers=True)
        for written in committed:  # written: the listing's search list and the heads learn the new nodes
            written.committed(listing)
            heads.learn(written.made)
        return results

    def _execute(
        self, txn: lmdb.Transaction, req: TrackRequest, op: str, seq: int, now: str,
        made: dict[str, tuple[bytes, NodeHead]], newest: Callable[[str], tuple[bytes, NodeHead] | None],
        written: _Written,
    ) -> tuple[dict[str, Any], bool]:
        if op in ("track_application", "track_deprecation"):
            return usage_data(req, op, now, newest), False
        dbs = self.dbs
        keys = dbs.keys
        pid_key = key_of(req.pattern_id, 300)
        key = pid_key + b"\0" + key_of(req.pattern_version, 150)
        existing = txn.get(key, db=keys)
        if existing is not None:
            return already_exists_data(head_decoder.decode(txn.get(existing[:8], db=dbs.log))), False
        parents = resolve_parents(req, op, newest)
        node = new_node(req, op, key, seq, now, parents)
        seq_b = u64(seq)
        put = txn.put
        put(seq_b, node_encoder.encode(node), db=dbs.log, append=True)
        fhash = written.file(txn, dbs, node.file_path) if node.file_path else None
        if fhash is not None and implied(pid_key, fhash):  # the hook's ids: no file entry needed
            put(key, seq_b + IMPLIED, db=keys)
        else:
            put(key, seq_b, db=keys)
            if fhash is not None:
                put(fhash + FILE_MARK + seq_b, b"", db=keys)
        put(pid_key, seq_b, db=keys)
        made[req.pattern_id] = (key, node)
        for pkey, _ in parents:
            put(pkey + b"\0" + seq_b, b"", db=keys)
        return created_data(node, op), True

    # -- reads --------------------------------------------------------------------------------

    def get(self, pattern_id: str, version: str | None = None) -> dict[str, Any] | None:
        """A node as a dict: the given version, or the newest one of ``pattern_id``."""

        def run(txn: lmdb.Transaction) -> dict[str, Any] | None:
            if version is None:
                found = resolve(txn, self.dbs, pattern_id)
                return found[1].to_dict() if found else None
            node = load_key(txn, self.dbs, node_key(pattern_id, version))
            return node.to_dict() if node is not None else None

        return self.store.read(run)

    def ancestry(self, pattern_id: str) -> dict[str, Any]:
        """The service's ancestry data: the node itself first (edge_type null), then ancestors
        breadth-first (each with the edge type of the link it was reached by)."""
        return self.store.read(lambda txn: lineage_walks.ancestry(txn, self.dbs, pattern_id))

    def descendants(self, pattern_id: str) -> dict[str, Any]:
        """The service's descendants data: direct children of the newest node, newest first."""
        return self.store.read(lambda txn: lineage_walks.descendants(txn, self.dbs, pattern_id))

    def query(self, file_path: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Nodes of ``file_path`` oldest first (every node, by insertion, when None); at most ``limit``.

        For a notebook (``*.ipynb``) its cells' nodes come too: a NotebookEdit is tracked per cell
        under ``NOTEBOOK#CELL_ID`` (pattern_tracker.core.capture), so the notebook's own path alone
        would find none of them. Each node's ``file_path`` says which cell it is.
        """
        limit = max(0, int(limit))
        return self.store.read(lambda txn: lineage_walks.file_query(txn, self.dbs, file_path, limit))

    def list_files(self, search: str | None = None, after: str | None = None, limit: int = 50) -> FilesPage:
        """One page of tracked files, in path order, from ``lineage_paths``
        (:mod:`~pattern_tracker.sinks.lineage_listing`; the shape: ``FilesPage``)."""
        return self.store.read(lambda txn: self.listing.page(txn, self.dbs, search, after, limit))

    def count(self) -> int:
        """Number of nodes."""
        return int(self.store.read(lambda txn: txn.stat(self.dbs.log)["entries"]))

    def stats(self) -> dict[str, int]:
        """Nodes, patterns, edges and file entries (a walk of ``lineage_keys``: for tests and benchmarks)."""
        return self.store.read(lambda txn: lineage_walks.counts(txn, self.dbs))


class _Written:
    """What one transaction wrote that outlives it: the files it indexed (for the listing's search
    list, when one is kept) and the paths it added to ``lineage_paths``."""

    MAX_KNOWN = 100_000  # paths remembered as stored (with their keys); past that the memory starts over

    def __init__(self, known: dict[str, tuple[bytes, bytes]], keep_files: bool) -> None:
        self.known = known
        self.new: dict[str, tuple[bytes, bytes]] = {}
        self.files: set[bytes] | None = set() if keep_files else None
        self.stamps: tuple[tuple[bytes | None, int], tuple[bytes | None, int]] = ((None, 0), (None, 0))
        self.made: dict[str, tuple[bytes, NodeHead]] = {}

    def file(self, txn: lmdb.Transaction, dbs: LineageDbs, path: str) -> bytes:
        """A node of ``path`` is being written: its path is stored once; returns F(path)."""
        keys = self.known.get(path) or self.new.get(path)
        if keys is None:
            keys = (key_of(path, 400), file_hash(path))
            if txn.get(keys[0], db=dbs.paths) is None:
                txn.put(keys[0], keys[1], db=dbs.paths)
            self.new[path] = keys
        if self.files is not None:
            self.files.add(keys[0])
        return keys[1]

    def committed(self, listing: lineage_listing.FileListing) -> None:
        if len(self.known) + len(self.new) > self.MAX_KNOWN:
            self.known.clear()
        self.known.update(self.new)
        if self.files is not None:
            listing.written(*self.stamps, self.files)


class _Heads:
    """The heads of recently written nodes, by their pattern's K: a parent's head without reading it.

    Why: resolving a parent otherwise reads its node from ``lineage_log`` (a page of the map
    touched, the head decoded): ~8 µs of the store thread's ~37 µs per event. An entry is used only
    while ``lineage_keys`` still names its seq as the pattern's newest (one key read, as before),
    so a node written meanwhile by another process or transaction is never missed; seqs are never
    reused. Committed nodes only: a transaction that fails teaches nothing.
    """

    LIMIT = 50_000  # entries (~300 bytes each); past that the memory starts over

    def __init__(self) -> None:
        self._by_key: dict[bytes, tuple[bytes, bytes, NodeHead]] = {}  # K(pattern_id) -> (seq, node key, head)

    def newest(self, txn: lmdb.Transaction, dbs: LineageDbs, pattern_id: str) -> tuple[bytes, NodeHead] | None:
        """(node key, head) of the newest version of ``pattern_id``, as ``resolve`` gives it."""
        pid_key = key_of(pattern_id, 300)
        seq = txn.get(pid_key, db=dbs.keys)
        if seq is None:
            return None
        hit = self._by_key.get(pid_key)
        if hit is not None and hit[0] == seq:
            return hit[1], hit[2]
        return newest_at(txn, dbs, pid_key, seq, head_decoder)

    def learn(self, made: dict[str, tuple[bytes, NodeHead]]) -> None:
        """Remember the newest node of each pattern a committed transaction wrote (head fields only:
        a stored Node holds its code)."""
        if len(self._by_key) + len(made) > self.LIMIT:
            self._by_key.clear()
        for key, node in made.values():
            head = NodeHead(*(getattr(node, name) for name in NodeHead.__struct_fields__))
            self._by_key[key[:key.index(b"\0")]] = (u64(node.seq), key, head)
