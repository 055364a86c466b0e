"""The lineage walks over a read transaction: ancestry, descendants, the nodes of a file.

Plain functions of ``(txn, dbs, ...)`` so the store decides the transaction and the walks only
read the layout (:mod:`pattern_tracker.sinks.lineage_layout`). Answers are the ``data`` of the
service's bodies (the Phase 4 API contract, docs/phase4-contract.md).
"""

from __future__ import annotations

from typing import Any

import lmdb

from pattern_tracker.sinks.lineage_contract import PatternNotFound, is_notebook
from pattern_tracker.sinks.lineage_layout import LineageDbs, Node, key_of, node_decoder, resolve, values

__all__ = ["ancestry", "descendants", "file_query"]

MAX_ANCESTRY_DEPTH = 20  # the service's get_pattern_ancestry limits
MAX_ANCESTRY_ROWS = 1000


def ancestry(txn: lmdb.Transaction, dbs: LineageDbs, pattern_id: str) -> dict[str, Any]:
    """The service's ancestry data: the node itself first (edge_type null), then ancestors
    breadth-first (each with the edge type of the link it was reached by)."""
    found = resolve(txn, dbs, pattern_id)
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
    while frontier and depth < MAX_ANCESTRY_DEPTH and len(rows) < MAX_ANCESTRY_ROWS:
        nxt: list[Node] = []
        for child in frontier:
            for pkey in child.parent_keys:
                if pkey in seen:
                    continue
                seen.add(pkey)
                raw = txn.get(pkey, db=dbs.nodes)
                if raw is None:
                    continue
                parent = node_decoder.decode(raw)
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
    rows = rows[:MAX_ANCESTRY_ROWS]
    return {
        "pattern_id": pattern_id,
        "pattern_node_id": node.node_id,
        "lineage_id": node.lineage_id,
        "ancestors": rows,
        "ancestry_depth": len(rows) - 1,
        "total_ancestors": len(rows) - 1,
    }


def descendants(txn: lmdb.Transaction, dbs: LineageDbs, pattern_id: str) -> dict[str, Any]:
    """The service's descendants data: direct children of the newest node, newest first."""
    found = resolve(txn, dbs, pattern_id)
    if found is None:
        raise PatternNotFound(pattern_id)
    key, node = found
    rows: list[dict[str, Any]] = []
    prefix = key + b"\0"
    with txn.cursor(db=dbs.children) as cur:
        if cur.set_range(prefix):
            for ckey, child_key in cur:
                if not ckey.startswith(prefix):
                    break
                raw = txn.get(child_key, db=dbs.nodes)
                if raw is None:
                    continue
                child = node_decoder.decode(raw)
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


def file_query(txn: lmdb.Transaction, dbs: LineageDbs, file_path: str | None, limit: int) -> list[dict[str, Any]]:
    """Nodes of ``file_path`` oldest first (every node, by insertion, when None); at most ``limit``
    (a notebook's cells included: see ``LineageStore.query``)."""
    if limit == 0:
        return []
    if file_path is None:
        nodes = [node_decoder.decode(v) for v in values(txn, dbs.nodes)]
        nodes.sort(key=lambda n: n.seq)
        return [n.to_dict() for n in nodes[:limit]]
    if is_notebook(file_path):
        found = _file_nodes(txn, dbs, key_of(file_path, 400) + b"\0") + _cell_nodes(txn, dbs, file_path)
        found.sort(key=lambda n: n.seq)
        return [n.to_dict() for n in found[:limit]]
    return [n.to_dict() for n in _file_nodes(txn, dbs, key_of(file_path, 400) + b"\0", limit)]


def _file_nodes(txn: lmdb.Transaction, dbs: LineageDbs, prefix: bytes, limit: int | None = None) -> list[Node]:
    """Nodes of the ``lineage_files`` entries whose key starts with ``prefix``, in key order."""
    out: list[Node] = []
    with txn.cursor(db=dbs.files) as cur:
        if cur.set_range(prefix):
            for fkey, node_key in cur:
                if not fkey.startswith(prefix):
                    break
                raw = txn.get(node_key, db=dbs.nodes)
                if raw is not None:
                    out.append(node_decoder.decode(raw))
                    if limit is not None and len(out) >= limit:
                        break
    return out


def _cell_nodes(txn: lmdb.Transaction, dbs: LineageDbs, notebook: str) -> list[Node]:
    """Nodes of the cells ``notebook#...``: one prefix scan, plus the few hashed keys (paths too long for a key)."""
    cell_prefix = notebook + "#"
    raw_prefix = cell_prefix.encode("utf-8", "surrogatepass")
    found = _file_nodes(txn, dbs, raw_prefix) if b"\0" not in raw_prefix else []
    found = [n for n in found if (n.file_path or "").startswith(cell_prefix)]
    found += [n for n in _file_nodes(txn, dbs, b"\x01") if (n.file_path or "").startswith(cell_prefix)]
    return found
