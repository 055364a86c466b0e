"""The embedded lineage store: the Phase 4 service's node/edge semantics on LMDB.

Semantics follow shared/PHASE4_API.md and the behaviour of the real service:

* a node is keyed by (pattern_id, pattern_version); re-sending an existing key answers
  ``status: "already_exists"`` (no second node, no new edge);
* a parent named in ``parent_pattern_ids`` resolves to the NEWEST node of that pattern_id;
* generation = 1 for a root, parent generation + 1 otherwise (max over the parents of a merge);
* a fork (pattern_forked) is tracked as a modification: its parent must exist, it gets an edge
  to it (default ``modified_from``); a modification or fork resolves and links only its FIRST
  parent (later entries are ignored, as the service ignores them);
* static rules (enum values, created needs pattern_id + pattern_data, modified needs a parent,
  merged needs two) raise ``LineageValidationError(kind="static")`` with the service's text
  (e.g. ``track_creation requires pattern_data``); rules that depend on stored state raise
  ``LineageValidationError(kind="execution")`` with the ``Validation error: ...`` prefix
  (e.g. ``Validation error: Parent pattern not found: X``).

Layout in the shared LMDB environment (named dbs of ``pattern_tracker.core.store``):

* ``lineage_nodes``    K(pattern_id) \\0 K(version)        -> Node (msgpack, array_like)
* ``lineage_latest``   K(pattern_id)                       -> node key of the newest version
* ``lineage_children`` parent node key \\0 u64(child seq)   -> child node key
* ``lineage_files``    K(file_path) \\0 u64(node seq)       -> node key (insertion order)

``K(s)`` is the UTF-8 of ``s`` when it is short and holds no NUL byte, else ``\\x01`` + a hex
digest, so keys stay below LMDB's 511-byte limit and hold exactly one NUL (prefix scans of
``key + b"\\0"`` are unambiguous). Node ids are deterministic (derived from the node key), so
rebuilding the store from a replay yields the same ids.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import lmdb
import msgspec

from pattern_tracker.model.events import EDGE_TYPES, EVENT_TYPES, TRANSFORMATION_TYPES, TrackRequest
from pattern_tracker.core.identity import event_id_for
from pattern_tracker.core.store import Store, from_u64, u64

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

# event_type -> operation (the service maps unknown-but-valid types, e.g. pattern_validated, to creation).
OPERATIONS: dict[str, str] = {
    "pattern_created": "track_creation",
    "pattern_modified": "track_modification",
    "pattern_merged": "track_merge",
    "pattern_applied": "track_application",
    "pattern_deprecated": "track_deprecation",
    "pattern_forked": "track_fork",
}

_EVENT_TYPES = frozenset(EVENT_TYPES)
_EDGE_TYPES = frozenset(EDGE_TYPES)
_TRANSFORMATION_TYPES = frozenset(TRANSFORMATION_TYPES)

# Operations whose node links to parents (the service's fork is a modification).
_WITH_PARENTS = frozenset({"track_modification", "track_fork", "track_merge"})

_SEQ_KEY = b"seq:lineage_node"  # same key shape as Store.next_seq(txn, "lineage_node")
_MAX_ANCESTRY_DEPTH = 20  # the service's get_pattern_ancestry limits
_MAX_ANCESTRY_ROWS = 1000


def operation_for(event_type: str) -> str:
    return OPERATIONS.get(event_type, "track_creation")


def is_notebook(file_path: str) -> bool:
    """A Jupyter notebook, whose cells are tracked as ``PATH#CELL_ID`` (see ``LineageStore.query``)."""
    return file_path.lower().endswith(".ipynb")


class LineageValidationError(ValueError):
    """A rule violation. ``detail`` is the service's exact text.

    ``kind="static"``: checkable without state (the service answers 400 ``{"detail": ...}``, and a
    batch holding one is refused as a whole). ``kind="execution"``: depends on stored state (the
    service answers 400 ``{"success": false, "error": ...}``; in a batch only that event fails).
    ``parent_missing`` marks "Parent pattern not found" (the parent may still be in flight).
    """

    def __init__(self, detail: str, *, kind: Literal["static", "execution"] = "static", parent_missing: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.kind = kind
        self.parent_missing = parent_missing


class PatternNotFound(LookupError):
    def __init__(self, pattern_id: str):
        self.pattern_id = pattern_id
        self.detail = f"Validation error: Pattern not found: {pattern_id}"
        super().__init__(self.detail)


class _NodeHead(msgspec.Struct, array_like=True, gc=False):
    """The leading fields of a stored node: all that resolving a parent or answering a duplicate
    reads. Decoding one stops there, before pattern_data (the code, ~9 KB on average).

    ``gc=False`` (here and on Node): nothing a node holds (its lists, the request's pattern_data)
    can refer back to it, so the cycle collector need not walk the thousands a batch creates.
    """

    seq: int
    node_id: str
    lineage_id: str
    event_id: str
    pattern_id: str
    pattern_version: str
    pattern_name: str
    pattern_type: str
    event_type: str
    generation: int


class Node(_NodeHead, array_like=True, gc=False):
    """One version of one pattern as stored (values of ``lineage_nodes``): the head's fields, then these."""

    created_at: str
    file_path: str | None
    language: str | None
    tool_name: str | None
    triggered_by: str
    reason: str | None
    parent_pattern_ids: list[str]
    parent_node_ids: list[str]
    parent_keys: list[bytes]
    edge_type: str | None
    transformation_type: str | None
    pattern_data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern_node_id": self.node_id,
            "lineage_id": self.lineage_id,
            "event_id": self.event_id,
            "pattern_id": self.pattern_id,
            "pattern_version": self.pattern_version,
            "pattern_name": self.pattern_name,
            "pattern_type": self.pattern_type,
            "event_type": self.event_type,
            "generation": self.generation,
            "created_at": self.created_at,
            "file_path": self.file_path,
            "language": self.language,
            "tool_name": self.tool_name,
            "triggered_by": self.triggered_by,
            "reason": self.reason,
            "parent_pattern_ids": list(self.parent_pattern_ids),
            "parent_node_ids": list(self.parent_node_ids),
            "edge_type": self.edge_type,
            "transformation_type": self.transformation_type,
            "pattern_data": self.pattern_data,
        }


_node_encoder = msgspec.msgpack.Encoder()
_node_decoder = msgspec.msgpack.Decoder(Node)
_head_decoder = msgspec.msgpack.Decoder(_NodeHead)
_NS = uuid.UUID("6f1d3c2a-5b4e-4e8f-9a7c-1d2e3f405162")


def _k(s: str, limit: int) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    if len(b) <= limit and b"\0" not in b and not b.startswith(b"\x01"):
        return b
    return b"\x01" + hashlib.blake2b(b, digest_size=20).hexdigest().encode()


def _node_key(pattern_id: str, version: str) -> bytes:
    return _k(pattern_id, 300) + b"\0" + _k(version, 150)


def _uuid_for(tag: bytes, key: bytes) -> str:
    """A deterministic uuid-shaped id (version-4 layout) derived from ``key``."""
    return _uuid4_text(hashlib.blake2b(tag + key, digest_size=16).hexdigest())


def random_uuids(n: int) -> list[str]:
    """``n`` random version-4 uuids (as ``str(uuid.uuid4())``) from one ``os.urandom`` call:
    a batch answer carries one per event, and ``uuid4()`` costs a syscall and an object each."""
    h = os.urandom(16 * n).hex()
    return [_uuid4_text(h[i:i + 32]) for i in range(0, 32 * n, 32)]


def _uuid4_text(h: str) -> str:
    """32 hex digits in the version-4 uuid layout (version nibble 4, variant 10xx)."""
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _static_check(req: TrackRequest) -> str:
    """The service's contract validation (in its order); returns the operation or raises."""
    if req.event_type not in _EVENT_TYPES:
        raise LineageValidationError(f"{req.event_type!r} is not a valid LineageEventType")
    if req.edge_type and req.edge_type not in _EDGE_TYPES:
        raise LineageValidationError(f"{req.edge_type!r} is not a valid EdgeType")
    if req.transformation_type and req.transformation_type not in _TRANSFORMATION_TYPES:
        raise LineageValidationError(f"{req.transformation_type!r} is not a valid TransformationType")
    op = operation_for(req.event_type)
    if op == "track_creation":
        if not req.pattern_id:
            raise LineageValidationError("track_creation requires pattern_id")
        if not req.pattern_data:
            raise LineageValidationError("track_creation requires pattern_data")
    elif op == "track_modification":
        if not req.pattern_id:
            raise LineageValidationError("track_modification requires pattern_id")
        if not req.parent_pattern_ids:
            raise LineageValidationError("track_modification requires parent_pattern_ids")
    elif op == "track_merge":
        if not req.pattern_id:
            raise LineageValidationError("track_merge requires pattern_id")
        if len(req.parent_pattern_ids) < 2:
            raise LineageValidationError("track_merge requires at least 2 parent_pattern_ids")
    return op


class LineageStore:
    """LMDB-backed pattern nodes and edges. Thread-safe as LMDB is; keep writes off the event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._nodes = store.db("lineage_nodes")
        self._latest = store.db("lineage_latest")
        self._children = store.db("lineage_children")
        self._files = store.db("lineage_files")
        self._state = store.db("state")

    # -- writes -------------------------------------------------------------------------------

    def validate_batch(self, reqs: Sequence[TrackRequest]) -> str | None:
        """The all-or-nothing static validation of a batch: the first violation's text, or None."""
        for req in reqs:
            try:
                _static_check(req)
            except LineageValidationError as exc:
                return exc.detail
        return None

    def track(self, req: TrackRequest) -> dict[str, Any]:
        """Track one event in one write transaction; returns the ``data`` of the success body."""
        _static_check(req)
        result = self.track_many([req])[0]
        if isinstance(result, LineageValidationError):
            raise result
        return result

    def track_many(
        self, reqs: Sequence[TrackRequest], processing_mode: str = "sequential", *,
        before_commit: Callable[[], None] | None = None,
    ) -> list[dict[str, Any] | LineageValidationError]:
        """Track events in ONE write transaction, in list order (both modes), one result each.

        Every event is validated (statically, then against the state as of that point in the
        transaction) before anything of it is written, so one failure leaves the others intact.
        ``before_commit`` is called (in this thread) once every event is written, as the commit,
        which mostly waits on the disk, begins: a caller can schedule its own CPU work around it.
        """
        del processing_mode  # execution order is list order in both modes
        reqs = list(reqs)

        def run(txn: lmdb.Transaction) -> list[dict[str, Any] | LineageValidationError]:
            raw = txn.get(_SEQ_KEY, db=self._state)
            seq0 = from_u64(raw) if raw else 0
            seq = seq0
            now = _now()  # one timestamp per transaction, like the service's NOW()
            made: dict[str, tuple[bytes, _NodeHead]] = {}
            out: list[dict[str, Any] | LineageValidationError] = []
            for req in reqs:
                try:
                    op = _static_check(req)
                    data, created = self._execute(txn, req, op, seq + 1, now, made)
                    if created:
                        seq += 1
                    out.append(data)
                except LineageValidationError as exc:
                    out.append(exc)
            if seq != seq0:
                txn.put(_SEQ_KEY, u64(seq), db=self._state)
            if before_commit is not None:
                before_commit()
            return out

        return self.store.write(run)

    def _resolve(self, txn: lmdb.Transaction, pattern_id: str, decoder: Any = _node_decoder) -> tuple[bytes, Any] | None:
        """(node key, node decoded by ``decoder``) of the latest version of ``pattern_id``."""
        key = txn.get(_k(pattern_id, 300), db=self._latest)
        if key is None:
            return None
        raw = txn.get(key, db=self._nodes)
        return (key, decoder.decode(raw)) if raw is not None else None

    def _resolve_head(
        self, txn: lmdb.Transaction, pattern_id: str, made: dict[str, tuple[bytes, _NodeHead]]
    ) -> tuple[bytes, _NodeHead] | None:
        """``_resolve`` for the write path: ``made`` (pattern_id -> newest node written earlier in
        this transaction, which is what ``lineage_latest`` now names) answers without a lookup when
        a parent travels in the same batch as its child; otherwise only the head is decoded."""
        found = made.get(pattern_id)
        return found if found is not None else self._resolve(txn, pattern_id, _head_decoder)

    def _execute(
        self, txn: lmdb.Transaction, req: TrackRequest, op: str, seq: int, now: str,
        made: dict[str, tuple[bytes, _NodeHead]],
    ) -> tuple[dict[str, Any], bool]:
        if op in ("track_application", "track_deprecation"):
            return self._track_usage(txn, req, op, now, made), False
        pid_key = _k(req.pattern_id, 300)
        key = pid_key + b"\0" + _k(req.pattern_version, 150)
        existing = txn.get(key, db=self._nodes)
        if existing is not None:
            return _already_exists(_head_decoder.decode(existing)), False
        parents = self._parents(txn, req, op, made)
        node = _new_node(req, op, key, seq, now, parents)
        put = txn.put
        put(key, _node_encoder.encode(node), db=self._nodes)
        put(pid_key, key, db=self._latest)
        made[req.pattern_id] = (key, node)
        seq_b = u64(seq)
        for pkey in node.parent_keys:
            put(pkey + b"\0" + seq_b, key, db=self._children)
        if node.file_path:
            put(_k(node.file_path, 400) + b"\0" + seq_b, key, db=self._files)
        return _created(node, op), True

    def _track_usage(
        self, txn: lmdb.Transaction, req: TrackRequest, op: str, now: str, made: dict[str, tuple[bytes, _NodeHead]]
    ) -> dict[str, Any]:
        """pattern_applied / pattern_deprecated: answered about the pattern's newest node, no node written."""
        found = self._resolve_head(txn, req.pattern_id, made)
        if found is None:
            raise LineageValidationError(f"Validation error: Pattern not found: {req.pattern_id}", kind="execution")
        data: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "pattern_id": req.pattern_id,
            "pattern_node_id": found[1].node_id,
        }
        if op == "track_deprecation":
            data["deprecated"] = True
        data["timestamp"] = now
        return data

    def _parents(
        self, txn: lmdb.Transaction, req: TrackRequest, op: str, made: dict[str, tuple[bytes, _NodeHead]]
    ) -> list[tuple[bytes, _NodeHead]]:
        """The resolved parents of a modification, fork or merge (none for the other operations).

        Like the service: a fork is tracked as a modification (its ``_track_fork`` calls
        ``_track_modification``), and a modification resolves ``parent_pattern_ids[0]`` only, so
        later entries are neither looked up nor linked and cannot fail the request. A merge
        resolves every parent.
        """
        if op not in _WITH_PARENTS:
            return []
        if not req.parent_pattern_ids:  # only pattern_forked gets here without parents (no static rule)
            raise LineageValidationError("Operation failed: list index out of range", kind="execution")
        wanted = req.parent_pattern_ids if op == "track_merge" else req.parent_pattern_ids[:1]
        parents: list[tuple[bytes, _NodeHead]] = []
        for pid in wanted:
            found = self._resolve_head(txn, pid, made)
            if found is None:
                raise LineageValidationError(
                    f"Validation error: Parent pattern not found: {pid}", kind="execution", parent_missing=True
                )
            parents.append(found)
        return parents

    # -- reads --------------------------------------------------------------------------------

    def get(self, pattern_id: str, version: str | None = None) -> dict[str, Any] | None:
        """A node as a dict: the given version, or the newest one of ``pattern_id``."""

        def run(txn: lmdb.Transaction) -> dict[str, Any] | None:
            if version is None:
                found = self._resolve(txn, pattern_id)
                return found[1].to_dict() if found else None
            raw = txn.get(_node_key(pattern_id, version), db=self._nodes)
            return _node_decoder.decode(raw).to_dict() if raw is not None else None

        return self.store.read(run)

    def ancestry(self, pattern_id: str) -> dict[str, Any]:
        """The service's ancestry data: the node itself first (edge_type null), then ancestors
        breadth-first (each with the edge type of the link it was reached by)."""

        def run(txn: lmdb.Transaction) -> dict[str, Any]:
            found = self._resolve(txn, pattern_id)
            if found is None:
                raise PatternNotFound(pattern_id)
            key, node = found
            rows: list[dict[str, Any]] = [
                {
                    "ancestor_id": node.node_id,
                    "ancestor_pattern_id": node.pattern_id,
                    "generation": node.generation,
                    "edge_type": None,
                    "created_at": node.created_at,
                }
            ]
            seen = {key}
            frontier: list[Node] = [node]
            depth = 1
            while frontier and depth < _MAX_ANCESTRY_DEPTH and len(rows) < _MAX_ANCESTRY_ROWS:
                nxt: list[Node] = []
                for child in frontier:
                    for pkey in child.parent_keys:
                        if pkey in seen:
                            continue
                        seen.add(pkey)
                        raw = txn.get(pkey, db=self._nodes)
                        if raw is None:
                            continue
                        parent = _node_decoder.decode(raw)
                        rows.append(
                            {
                                "ancestor_id": parent.node_id,
                                "ancestor_pattern_id": parent.pattern_id,
                                "generation": parent.generation,
                                "edge_type": child.edge_type,
                                "created_at": parent.created_at,
                            }
                        )
                        nxt.append(parent)
                frontier = nxt
                depth += 1
            rows = rows[:_MAX_ANCESTRY_ROWS]
            return {
                "pattern_id": pattern_id,
                "pattern_node_id": node.node_id,
                "lineage_id": node.lineage_id,
                "ancestors": rows,
                "ancestry_depth": len(rows) - 1,
                "total_ancestors": len(rows) - 1,
            }

        return self.store.read(run)

    def descendants(self, pattern_id: str) -> dict[str, Any]:
        """The service's descendants data: direct children of the newest node, newest first."""

        def run(txn: lmdb.Transaction) -> dict[str, Any]:
            found = self._resolve(txn, pattern_id)
            if found is None:
                raise PatternNotFound(pattern_id)
            key, node = found
            rows: list[dict[str, Any]] = []
            prefix = key + b"\0"
            with txn.cursor(db=self._children) as cur:
                if cur.set_range(prefix):
                    for ckey, child_key in cur:
                        if not ckey.startswith(prefix):
                            break
                        raw = txn.get(child_key, db=self._nodes)
                        if raw is None:
                            continue
                        child = _node_decoder.decode(raw)
                        rows.append(
                            {
                                "descendant_id": child.node_id,
                                "descendant_pattern_id": child.pattern_id,
                                "edge_type": child.edge_type,
                                "transformation_type": child.transformation_type,
                                "created_at": child.created_at,
                            }
                        )
            rows.reverse()
            return {
                "pattern_id": pattern_id,
                "pattern_node_id": node.node_id,
                "descendants": rows,
                "total_descendants": len(rows),
            }

        return self.store.read(run)

    def query(self, file_path: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Nodes of ``file_path`` oldest first (every node, by insertion, when None); at most ``limit``.

        For a notebook (``*.ipynb``) its cells' nodes come too: a NotebookEdit is tracked per cell
        under ``NOTEBOOK#CELL_ID`` (pattern_tracker.core.capture), so the notebook's own path alone
        would find none of them. Each node's ``file_path`` says which cell it is.
        """
        limit = max(0, int(limit))

        def run(txn: lmdb.Transaction) -> list[dict[str, Any]]:
            if limit == 0:
                return []
            if file_path is None:
                nodes = [_node_decoder.decode(v) for v in _values(txn, self._nodes)]
                nodes.sort(key=lambda n: n.seq)
                return [n.to_dict() for n in nodes[:limit]]
            if is_notebook(file_path):
                found = self._file_nodes(txn, _k(file_path, 400) + b"\0") + self._cell_nodes(txn, file_path)
                found.sort(key=lambda n: n.seq)
                return [n.to_dict() for n in found[:limit]]
            return [n.to_dict() for n in self._file_nodes(txn, _k(file_path, 400) + b"\0", limit)]

        return self.store.read(run)

    def _file_nodes(self, txn: lmdb.Transaction, prefix: bytes, limit: int | None = None) -> list[Node]:
        """Nodes of the ``lineage_files`` entries whose key starts with ``prefix``, in key order."""
        out: list[Node] = []
        with txn.cursor(db=self._files) as cur:
            if cur.set_range(prefix):
                for fkey, node_key in cur:
                    if not fkey.startswith(prefix):
                        break
                    raw = txn.get(node_key, db=self._nodes)
                    if raw is not None:
                        out.append(_node_decoder.decode(raw))
                        if limit is not None and len(out) >= limit:
                            break
        return out

    def _cell_nodes(self, txn: lmdb.Transaction, notebook: str) -> list[Node]:
        """Nodes of the cells ``notebook#...``: one prefix scan, plus the few hashed keys (paths too long for a key)."""
        cell_prefix = notebook + "#"
        raw_prefix = cell_prefix.encode("utf-8", "surrogatepass")
        found = self._file_nodes(txn, raw_prefix) if b"\0" not in raw_prefix else []
        found = [n for n in found if (n.file_path or "").startswith(cell_prefix)]
        found += [n for n in self._file_nodes(txn, b"\x01") if (n.file_path or "").startswith(cell_prefix)]
        return found

    def count(self) -> int:
        """Number of nodes."""
        return int(self.store.read(lambda txn: txn.stat(self._nodes)["entries"]))

    def stats(self) -> dict[str, int]:
        def run(txn: lmdb.Transaction) -> dict[str, int]:
            return {
                "nodes": int(txn.stat(self._nodes)["entries"]),
                "patterns": int(txn.stat(self._latest)["entries"]),
                "edges": int(txn.stat(self._children)["entries"]),
                "file_entries": int(txn.stat(self._files)["entries"]),
            }

        return self.store.read(run)


def _new_node(
    req: TrackRequest, op: str, key: bytes, seq: int, now: str, parents: list[tuple[bytes, _NodeHead]]
) -> Node:
    """The node an event creates: generation and lineage from its parents, ids derived from ``key``."""
    if parents:
        lineage_id = parents[0][1].lineage_id
        generation = max(p.generation for _, p in parents) + 1
        if op == "track_merge":
            edge_type, transformation = req.edge_type or "merged_from", "merge"
        else:
            # Modification and fork. The contract says a fork is "tracked like a modification", so the
            # modification's defaults apply: modified_from / refactor, as the service's _track_fork
            # gives (it delegates to _track_modification). derived_from would read better for a fork,
            # but a stand-in that picked it would store edges the real service never writes.
            edge_type, transformation = req.edge_type or "modified_from", req.transformation_type or "refactor"
    else:
        lineage_id, generation, edge_type, transformation = _uuid_for(b"lineage", key), 1, None, None
    data = req.pattern_data
    data_event_id = data.get("event_id") if data else None
    event_id = data_event_id if isinstance(data_event_id, str) and data_event_id else event_id_for(
        req.pattern_id, req.pattern_version
    )
    file_path = req.file_path
    if file_path is None and data:
        fp = data.get("file_path")
        file_path = fp if isinstance(fp, str) else None
    return Node(
        seq=seq,
        node_id=_uuid_for(b"node", key),
        lineage_id=lineage_id,
        event_id=event_id,
        pattern_id=req.pattern_id,
        pattern_version=req.pattern_version,
        pattern_name=req.pattern_name,
        pattern_type=req.pattern_type,
        event_type=req.event_type,
        generation=generation,
        created_at=now,
        file_path=file_path,
        language=req.language,
        tool_name=req.tool_name,
        triggered_by=req.triggered_by,
        reason=req.reason,
        parent_pattern_ids=[p.pattern_id for _, p in parents],
        parent_node_ids=[p.node_id for _, p in parents],
        parent_keys=[k for k, _ in parents],
        edge_type=edge_type,
        transformation_type=transformation,
        pattern_data=data,
    )


def _created(node: Node, op: str) -> dict[str, Any]:
    """The service's ``data`` for a new node."""
    data = {
        "lineage_id": node.lineage_id,
        "pattern_node_id": node.node_id,
        "event_id": node.event_id,
        "pattern_id": node.pattern_id,
        "pattern_name": node.pattern_name,
        "created_at": node.created_at,
    }
    if node.parent_keys:
        data["parent_node_ids"] = list(node.parent_node_ids)
        if op == "track_merge":
            data["parent_count"] = len(node.parent_keys)
        data["generation"] = node.generation
    return data


def _already_exists(node: _NodeHead) -> dict[str, Any]:
    """The service's ``data`` for a re-sent (pattern_id, pattern_version)."""
    return {
        "lineage_id": node.lineage_id,
        "pattern_node_id": node.node_id,
        "event_id": node.event_id,
        "pattern_id": node.pattern_id,
        "status": "already_exists",
        "message": "Pattern already exists in lineage",
    }


def _values(txn: lmdb.Transaction, db: Any) -> Iterable[bytes]:
    with txn.cursor(db=db) as cur:
        for _key, value in cur:
            yield value
