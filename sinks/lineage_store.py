"""The embedded lineage store: the Phase 4 service's node/edge semantics on LMDB.

:class:`LineageStore` implements the lineage store interface
(:class:`~pattern_tracker.sinks.lineage_contract.LineageBackend`) over the shared LMDB
environment. The parts, each readable alone:

* :mod:`~pattern_tracker.sinks.lineage_contract` — the interface, its errors, the operations;
* :mod:`~pattern_tracker.sinks.lineage_rules` — the track semantics (the Phase 4 API contract,
  docs/phase4-contract.md): validation, parent resolution, the node an event makes;
* :mod:`~pattern_tracker.sinks.lineage_layout` — records, keys and named dbs in LMDB;
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
from pattern_tracker.sinks import lineage_listing, lineage_walks
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
    SEQ_KEY,
    LineageDbs,
    Node,
    NodeHead,
    head_decoder,
    key_of,
    node_decoder,
    node_encoder,
    node_key,
    random_uuids,
    resolve,
)
from pattern_tracker.sinks.lineage_rules import (
    already_exists_data,
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
        self.store = store
        self.dbs = LineageDbs.of(store)
        self.listing = lineage_listing.FileListing()

    # -- writes -------------------------------------------------------------------------------

    def validate_batch(self, reqs: Sequence[TrackRequest]) -> str | None:
        """The all-or-nothing static validation of a batch: the first violation's text, or None."""
        for req in reqs:
            try:
                static_check(req)
            except LineageValidationError as exc:
                return exc.detail
        return None

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
        committed: list[tuple[tuple[bytes | None, int], tuple[bytes | None, int], set[bytes]]] = []

        def run(txn: lmdb.Transaction) -> list[TrackResult]:
            raw = txn.get(SEQ_KEY, db=dbs.state)
            seq0 = from_u64(raw) if raw else 0
            seq = seq0
            now = now_iso()  # one timestamp per transaction, like the service's NOW()
            made: dict[str, tuple[bytes, NodeHead]] = {}
            files: set[bytes] | None = set() if listing.keeps_paths() else None
            before = (raw, int(txn.stat(dbs.files)["entries"])) if files is not None else (None, 0)

            def newest(pattern_id: str) -> tuple[bytes, NodeHead] | None:
                """``made`` (pattern_id -> newest node written earlier in this transaction, which is
                what ``lineage_latest`` now names) answers without a lookup when a parent travels in
                the same batch as its child; otherwise only the head is decoded."""
                found = made.get(pattern_id)
                return found if found is not None else resolve(txn, dbs, pattern_id, head_decoder)

            out: list[TrackResult] = []
            for req in reqs:
                try:
                    op = static_check(req)
                    data, created = self._execute(txn, req, op, seq + 1, now, made, newest, files)
                    if created:
                        seq += 1
                    out.append(data)
                except LineageValidationError as exc:
                    out.append(exc)
            if seq != seq0:
                txn.put(SEQ_KEY, u64(seq), db=dbs.state)
            committed.clear()  # the store may run this again (a map grown): only the last run counts
            if files is not None and seq != seq0:
                committed.append((before, (u64(seq), int(txn.stat(dbs.files)["entries"])), files))
            if before_commit is not None:
                before_commit()
            return out

        results = self.store.write(run)
        for before, after, files in committed:  # written: the listing's search list learns the new files
            listing.written(before, after, files)
        return results

    def _execute(
        self, txn: lmdb.Transaction, req: TrackRequest, op: str, seq: int, now: str,
        made: dict[str, tuple[bytes, NodeHead]], newest: Callable[[str], tuple[bytes, NodeHead] | None],
        files: set[bytes] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        if op in ("track_application", "track_deprecation"):
            return usage_data(req, op, now, newest), False
        dbs = self.dbs
        pid_key = key_of(req.pattern_id, 300)
        key = pid_key + b"\0" + key_of(req.pattern_version, 150)
        existing = txn.get(key, db=dbs.nodes)
        if existing is not None:
            return already_exists_data(head_decoder.decode(existing)), False
        parents = resolve_parents(req, op, newest)
        node = new_node(req, op, key, seq, now, parents)
        put = txn.put
        put(key, node_encoder.encode(node), db=dbs.nodes)
        put(pid_key, key, db=dbs.latest)
        made[req.pattern_id] = (key, node)
        seq_b = u64(seq)
        for pkey in node.parent_keys:
            put(pkey + b"\0" + seq_b, key, db=dbs.children)
        if node.file_path:
            fkey = key_of(node.file_path, 400)
            put(fkey + b"\0" + seq_b, key, db=dbs.files)
            if files is not None:
                files.add(fkey)
        return created_data(node, op), True

    # -- reads --------------------------------------------------------------------------------

    def get(self, pattern_id: str, version: str | None = None) -> dict[str, Any] | None:
        """A node as a dict: the given version, or the newest one of ``pattern_id``."""

        def run(txn: lmdb.Transaction) -> dict[str, Any] | None:
            if version is None:
                found = resolve(txn, self.dbs, pattern_id)
                return found[1].to_dict() if found else None
            raw = txn.get(node_key(pattern_id, version), db=self.dbs.nodes)
            return node_decoder.decode(raw).to_dict() if raw is not None else None

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
        """One page of tracked files, in path order, from the ``lineage_files`` index
        (:mod:`~pattern_tracker.sinks.lineage_listing`; the shape: ``FilesPage``)."""
        return self.store.read(lambda txn: self.listing.page(txn, self.dbs, search, after, limit))

    def count(self) -> int:
        """Number of nodes."""
        return int(self.store.read(lambda txn: txn.stat(self.dbs.nodes)["entries"]))

    def stats(self) -> dict[str, int]:
        dbs = self.dbs

        def run(txn: lmdb.Transaction) -> dict[str, int]:
            return {
                "nodes": int(txn.stat(dbs.nodes)["entries"]),
                "patterns": int(txn.stat(dbs.latest)["entries"]),
                "edges": int(txn.stat(dbs.children)["entries"]),
                "file_entries": int(txn.stat(dbs.files)["entries"]),
            }

        return self.store.read(run)
