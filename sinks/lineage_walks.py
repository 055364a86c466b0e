"""The lineage walks over a read transaction: ancestry, descendants, the nodes of a file.

Plain functions of ``(txn, dbs, ...)`` so the store decides the transaction and the walks only
read the layout (:mod:`pattern_tracker.sinks.lineage_layout`). Answers are the ``data`` of the
service's bodies (the Phase 4 API contract, docs/phase4-contract.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lmdb

from pattern_tracker.sinks.lineage_contract import PatternNotFound, is_notebook
from pattern_tracker.sinks.lineage_layout import (
    FILE_MARK,
    LineageDbs,
    Node,
    file_hash,
    file_seqs,
    load,
    load_key,
    node_decoder,
    resolve,
)

__all__ = ["ancestry", "counts", "descendants", "file_nodes", "file_query"]

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
                parent = load_key(txn, dbs, pkey)
                if parent is None:
                    continue
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
    prefix = key + b"\0"  # its edges: node key \0 u64(child seq), children oldest first
    with txn.cursor(db=dbs.keys) as cur:
        if cur.set_range(prefix):
            for ekey in cur.iternext(keys=True, values=False):
                if not ekey.startswith(prefix):
                    break
                child = load(txn, dbs, ekey[-8:])
                if child is None:
                    continue
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
    if file_path is None:  # the log is in insertion order
        out: list[dict[str, Any]] = []
        with txn.cursor(db=dbs.log) as cur:
            for raw in cur.iternext(keys=False, values=True):
                out.append(node_decoder.decode(raw).to_dict())
                if len(out) >= limit:
                    break
        return out
    if is_notebook(file_path):
        found = file_nodes(txn, dbs, file_path) + _cell_nodes(txn, dbs, file_path)
        found.sort(key=lambda n: n.seq)
        return [n.to_dict() for n in found[:limit]]
    return [n.to_dict() for n in file_nodes(txn, dbs, file_path, limit)]


def file_nodes(txn: lmdb.Transaction, dbs: LineageDbs, path: str, limit: int | None = None) -> list[Node]:
    """The nodes of file ``path``, oldest first (at most ``limit``)."""
    return _nodes_of(txn, dbs, file_hash(path), lambda p: p == path, limit)


def _nodes_of(txn: lmdb.Transaction, dbs: LineageDbs, fhash: bytes, wanted: Callable[[str], bool],
              limit: int | None = None) -> list[Node]:
    """Nodes of file F ``fhash`` whose file_path is ``wanted``, oldest first (the check keeps
    apart two paths with the same F)."""
    out: list[Node] = []
    for seq in file_seqs(txn, dbs, fhash):
        node = load(txn, dbs, seq)
        if node is not None and node.file_path is not None and wanted(node.file_path):
            out.append(node)
            if limit is not None and len(out) >= limit:
                break
    return out


def _cell_nodes(txn: lmdb.Transaction, dbs: LineageDbs, notebook: str) -> list[Node]:
    """Nodes of the cells ``notebook#...``: the cells' paths by one prefix scan of ``lineage_paths``,
    plus the few hashed keys (paths too long for a key)."""
    cell_prefix = notebook + "#"
    raw_prefix = cell_prefix.encode("utf-8", "surrogatepass")

    def cell(path: str) -> bool:
        return path.startswith(cell_prefix)

    found: list[Node] = []
    with txn.cursor(db=dbs.paths) as cur:
        for prefix in ([raw_prefix] if b"\0" not in raw_prefix else []) + [b"\x01"]:
            if cur.set_range(prefix):
                for pkey, fhash in cur.iternext():
                    if not pkey.startswith(prefix):
                        break
                    found += _nodes_of(txn, dbs, bytes(fhash), cell)
    return found


def counts(txn: lmdb.Transaction, dbs: LineageDbs) -> dict[str, int]:
    """Nodes, patterns (newest entries), edges and file entries (IMPLIED or not), by the shape of each key."""
    patterns = edges = files = 0
    with txn.cursor(db=dbs.keys) as cur:
        for key, value in cur.iternext():
            first = key.find(b"\0")
            if first < 0:
                patterns += 1
            elif first == 16 and len(key) == 27 and key[16:19] == FILE_MARK:
                files += 1
            elif key.find(b"\0", first + 1) >= 0:
                edges += 1
            elif len(value) == 9:
                files += 1
    return {"nodes": int(txn.stat(dbs.log)["entries"]), "patterns": patterns, "edges": edges, "file_entries": files}
