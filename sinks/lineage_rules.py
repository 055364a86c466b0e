"""The Phase 4 track semantics, apart from storage: validation, parents, the node an event makes.

They follow the Phase 4 API contract (docs/phase4-contract.md) and the behaviour of the real service:

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
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from pattern_tracker.core.identity import event_id_for
from pattern_tracker.model.events import EDGE_TYPES, EVENT_TYPES, TRANSFORMATION_TYPES, TrackRequest
from pattern_tracker.sinks.lineage_contract import LineageValidationError, operation_for
from pattern_tracker.sinks.lineage_layout import Node, NodeHead, uuid_for

__all__ = ["already_exists_data", "batch_problem", "created_data", "new_node", "now_iso", "resolve_parents", "static_check",
           "usage_data"]

_EVENT_TYPES = frozenset(EVENT_TYPES)
_EDGE_TYPES = frozenset(EDGE_TYPES)
_TRANSFORMATION_TYPES = frozenset(TRANSFORMATION_TYPES)

# Operations whose node links to parents (the service's fork is a modification).
_WITH_PARENTS = frozenset({"track_modification", "track_fork", "track_merge"})

# The newest node of a pattern_id: (node key, its head), or None when unknown.
Lookup = Callable[[str], "tuple[bytes, NodeHead] | None"]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def static_check(req: TrackRequest) -> str:
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


def batch_problem(reqs: Sequence[TrackRequest]) -> str | None:
    """The service's all-or-nothing static validation of a batch: the first violation's text, or None."""
    for req in reqs:
        try:
            static_check(req)
        except LineageValidationError as exc:
            return exc.detail
    return None


def usage_data(req: TrackRequest, op: str, now: str, lookup: Lookup) -> dict[str, Any]:
    """pattern_applied / pattern_deprecated: answered about the pattern's newest node, no node written."""
    found = lookup(req.pattern_id)
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


def resolve_parents(req: TrackRequest, op: str, lookup: Lookup) -> list[tuple[bytes, NodeHead]]:
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
    parents: list[tuple[bytes, NodeHead]] = []
    for pid in wanted:
        found = lookup(pid)
        if found is None:
            raise LineageValidationError(
                f"Validation error: Parent pattern not found: {pid}", kind="execution", parent_missing=True
            )
        parents.append(found)
    return parents


def new_node(
    req: TrackRequest, op: str, key: bytes, seq: int, now: str, parents: list[tuple[bytes, NodeHead]]
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
        lineage_id, generation, edge_type, transformation = uuid_for(b"lineage", key), 1, None, None
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
        node_id=uuid_for(b"node", key),
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


def created_data(node: Node, op: str) -> dict[str, Any]:
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


def already_exists_data(node: NodeHead) -> dict[str, Any]:
    """The service's ``data`` for a re-sent (pattern_id, pattern_version)."""
    return {
        "lineage_id": node.lineage_id,
        "pattern_node_id": node.node_id,
        "event_id": node.event_id,
        "pattern_id": node.pattern_id,
        "status": "already_exists",
        "message": "Pattern already exists in lineage",
    }
