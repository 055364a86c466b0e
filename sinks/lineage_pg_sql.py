"""The SQL of the PostgreSQL lineage store and the row <-> node conversions (no I/O).

Reads select :data:`HEAD` (a :class:`~pattern_tracker.sinks.lineage_layout.NodeHead`, all that
resolving a parent or answering a duplicate needs) or :data:`NODE` (every field of a node's
dict). Writes take whole batches as arrays (``unnest``), so a 100-event batch is one statement
per table, not 100.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from pattern_tracker.sinks.lineage_layout import Node, NodeHead

__all__ = [
    "ALLOCATE_SEQS",
    "EXISTING_KEYS",
    "HEAD",
    "INSERT_EDGES",
    "INSERT_FILES",
    "INSERT_NODES",
    "NEWEST",
    "NODE",
    "UnstorableText",
    "head_of",
    "is_storable",
    "iso",
    "node_dict",
    "node_rows",
    "storable_json",
]

HEAD = ("n.seq, n.node_id::text, n.lineage_id::text, n.event_id, n.pattern_id, n.pattern_version, "
        "n.pattern_name, n.pattern_type, n.event_type, n.generation")

NODE = (HEAD + ", n.created_at, n.file_path, n.language, n.tool_name, n.triggered_by, n.reason, "
        "n.parent_pattern_ids, n.parent_node_ids::text[], n.edge_type, n.transformation_type, n.pattern_data")

# The newest node (highest seq) of each pattern id: one index probe each.
NEWEST = f"""
SELECT {HEAD} FROM unnest(%b::text[]) AS p(id)
CROSS JOIN LATERAL (
    SELECT * FROM lineage_nodes WHERE pattern_id = p.id ORDER BY seq DESC LIMIT 1
) AS n
"""

# The nodes of the given (pattern_id, pattern_version) keys that exist.
EXISTING_KEYS = f"""
SELECT {HEAD} FROM unnest(%b::text[], %b::text[]) AS k(pid, ver)
JOIN lineage_nodes AS n ON n.pattern_id = k.pid AND n.pattern_version = k.ver
"""

# seq values for the nodes about to be written, ascending (gaps are harmless).
ALLOCATE_SEQS = "SELECT nextval(pg_get_serial_sequence('lineage_nodes', 'seq')) FROM generate_series(1, %s)"

_NODE_COLUMNS = ("seq, node_id, lineage_id, event_id, pattern_id, pattern_version, pattern_name, pattern_type, "
                 "event_type, generation, created_at, file_path, language, tool_name, triggered_by, reason, "
                 "edge_type, transformation_type, parent_pattern_ids, parent_node_ids, pattern_data")

# Rows come sorted by key (see node_rows): concurrent writers take the unique index's locks in
# one order, so two batches holding the same keys wait for each other instead of deadlocking.
INSERT_NODES = f"""
INSERT INTO lineage_nodes ({_NODE_COLUMNS})
SELECT r.seq, r.node_id, r.lineage_id, r.event_id, r.pattern_id, r.pattern_version, r.pattern_name,
       r.pattern_type, r.event_type, r.generation, r.created_at, r.file_path, r.language, r.tool_name,
       r.triggered_by, r.reason, r.edge_type, r.transformation_type,
       ARRAY(SELECT jsonb_array_elements_text(r.parents::jsonb -> 0)),
       ARRAY(SELECT jsonb_array_elements_text(r.parents::jsonb -> 1))::uuid[],
       r.pattern_data::jsonb
FROM unnest(%b::bigint[], %b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::int[], %b::timestamptz[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::text[], %b::text[], %b::text[])
     AS r(seq, node_id, lineage_id, event_id, pattern_id, pattern_version, pattern_name, pattern_type,
          event_type, generation, created_at, file_path, language, tool_name, triggered_by, reason,
          edge_type, transformation_type, parents, pattern_data)
ON CONFLICT DO NOTHING
RETURNING seq
"""

INSERT_EDGES = """
INSERT INTO lineage_edges (child_seq, position, parent_seq, edge_type, transformation_type)
SELECT * FROM unnest(%b::bigint[], %b::smallint[], %b::bigint[], %b::text[], %b::text[])
ON CONFLICT DO NOTHING
"""

INSERT_FILES = "INSERT INTO lineage_files (file_path) SELECT unnest(%b::text[]) ORDER BY 1 ON CONFLICT DO NOTHING"


class UnstorableText(ValueError):
    """A value PostgreSQL's text or jsonb cannot hold (a NUL character, a lone surrogate)."""


def iso(value: datetime) -> str:
    """A timestamptz as the store's text (``datetime.isoformat()`` in UTC, as ``now_iso`` writes it)."""
    return value.isoformat()


def head_of(row: Sequence[Any]) -> NodeHead:
    return NodeHead(*row[:10])


def node_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A :data:`NODE` row as the node's dict (``Node.to_dict``'s keys and order)."""
    return {
        "pattern_node_id": row[1],
        "lineage_id": row[2],
        "event_id": row[3],
        "pattern_id": row[4],
        "pattern_version": row[5],
        "pattern_name": row[6],
        "pattern_type": row[7],
        "event_type": row[8],
        "generation": row[9],
        "created_at": iso(row[10]),
        "file_path": row[11],
        "language": row[12],
        "tool_name": row[13],
        "triggered_by": row[14],
        "reason": row[15],
        "parent_pattern_ids": list(row[16]),
        "parent_node_ids": list(row[17]),
        "edge_type": row[18],
        "transformation_type": row[19],
        "pattern_data": row[20],
    }


_json = msgspec.json.Encoder()


def is_storable(text: str) -> bool:
    """Can PostgreSQL's text hold ``text`` (no NUL character, no lone surrogate)?"""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_json(node: Node) -> str:
    """The node's pattern_data as JSON text; raises :class:`UnstorableText` for what PostgreSQL refuses."""
    texts = (node.pattern_id, node.pattern_version, node.pattern_name, node.pattern_type, node.event_type,
             node.event_id, node.file_path or "", node.language or "", node.tool_name or "", node.triggered_by,
             node.reason or "", *node.parent_pattern_ids)
    joined = "".join(texts)
    try:
        data = _json.encode(node.pattern_data)
        joined.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableText("a lone surrogate character") from exc
    if "\x00" in joined or b"\\u0000" in data:
        raise UnstorableText("a NUL character (\\u0000)")
    return data.decode("utf-8")


def node_rows(nodes: Sequence[tuple[Node, str]]) -> list[list[Any]]:
    """INSERT_NODES' parameters for ``(node, pattern_data JSON)`` pairs, sorted by key (see INSERT_NODES)."""
    ordered = sorted(nodes, key=lambda pair: (pair[0].pattern_id.encode(), pair[0].pattern_version.encode()))
    cols: list[list[Any]] = [[] for _ in range(20)]
    for node, data in ordered:
        values = (node.seq, node.node_id, node.lineage_id, node.event_id, node.pattern_id, node.pattern_version,
                  node.pattern_name, node.pattern_type, node.event_type, node.generation, node.created_at,
                  node.file_path, node.language, node.tool_name, node.triggered_by, node.reason, node.edge_type,
                  node.transformation_type,
                  _json.encode([node.parent_pattern_ids, node.parent_node_ids]).decode(), data)
        for col, value in zip(cols, values):
            col.append(value)
    return cols
