"""Reading lineage from PostgreSQL: ancestry, descendants, a file's nodes, one node, the file listing.

Same answers, in the same order, as the embedded store's walks
(:mod:`pattern_tracker.sinks.lineage_walks`): ancestry is the newest node of the pattern first
(edge_type null), then its ancestors breadth-first, each once (a merge's shared ancestor too),
with the edge type of the node it was reached from, at most 20 levels and 1000 rows;
descendants are the direct children of the newest node, newest first. Each answer is one query
(the ancestry walk is a recursive one, level by level).
"""

from __future__ import annotations

from typing import Any

import psycopg

from pattern_tracker.sinks.lineage_contract import (
    FilesPage,
    PatternNotFound,
    is_notebook,
)
from pattern_tracker.sinks.lineage_listing import MAX_LIMIT, edit_time
from pattern_tracker.sinks.lineage_pg_sql import NODE, is_storable, iso, node_dict
from pattern_tracker.sinks.lineage_walks import MAX_ANCESTRY_DEPTH, MAX_ANCESTRY_ROWS

__all__ = ["ancestry", "count", "descendants", "file_query", "get", "list_files"]

Conn = psycopg.AsyncConnection[Any]

# Each level of ``walk`` is one row: the level's nodes in order (``frontier``), the node each was
# reached from (``via``), and every node met so far (``seen``), so a node met at an earlier level,
# or earlier in this one, is not met again: the embedded store's breadth-first walk, in SQL.
# ``OFFSET 0`` keeps the edges lookup a per-node index probe: without it the planner may join the
# frontier to a scan of the whole edges table (it cannot estimate the frontier's size).
_ANCESTRY = f"""
WITH RECURSIVE start AS (
    SELECT seq FROM lineage_nodes WHERE pattern_id = %(pid)s ORDER BY seq DESC LIMIT 1
), walk(depth, frontier, via, seen) AS (
    SELECT 1, ARRAY[start.seq], ARRAY[NULL::bigint], ARRAY[start.seq] FROM start
    UNION ALL
    SELECT w.depth + 1, nxt.frontier, nxt.via, w.seen || nxt.frontier
    FROM walk AS w
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(d.parent_seq ORDER BY d.i, d.position), '{{}}') AS frontier,
               coalesce(array_agg(d.child_seq ORDER BY d.i, d.position), '{{}}') AS via
        FROM (
            SELECT DISTINCT ON (e.parent_seq) e.parent_seq, e.child_seq, f.i, e.position
            FROM unnest(w.frontier) WITH ORDINALITY AS f(seq, i)
            CROSS JOIN LATERAL (
                SELECT parent_seq, child_seq, position FROM lineage_edges WHERE child_seq = f.seq OFFSET 0
            ) AS e
            WHERE e.parent_seq <> ALL (w.seen)
            ORDER BY e.parent_seq, f.i, e.position
        ) AS d
    ) AS nxt
    WHERE w.depth < {MAX_ANCESTRY_DEPTH} AND cardinality(w.frontier) > 0 AND cardinality(w.seen) < {MAX_ANCESTRY_ROWS}
)
SELECT n.node_id::text, n.pattern_id, n.generation, c.edge_type, n.created_at, n.lineage_id::text
FROM walk AS w
CROSS JOIN LATERAL unnest(w.frontier, w.via) WITH ORDINALITY AS a(seq, via, ord)
JOIN lineage_nodes AS n ON n.seq = a.seq
LEFT JOIN lineage_nodes AS c ON c.seq = a.via
ORDER BY w.depth, a.ord
LIMIT {MAX_ANCESTRY_ROWS}
"""

_DESCENDANTS = """
WITH start AS (
    SELECT seq, node_id FROM lineage_nodes WHERE pattern_id = %(pid)s ORDER BY seq DESC LIMIT 1
)
SELECT start.node_id::text, ch.node_id, ch.pattern_id, ch.edge_type, ch.transformation_type, ch.created_at
FROM start
LEFT JOIN LATERAL (
    SELECT DISTINCT ON (e.child_seq) e.child_seq, c.node_id::text, c.pattern_id, c.edge_type,
           c.transformation_type, c.created_at
    FROM lineage_edges AS e JOIN lineage_nodes AS c ON c.seq = e.child_seq
    WHERE e.parent_seq = start.seq
    ORDER BY e.child_seq DESC
) AS ch ON true
ORDER BY ch.child_seq DESC
"""


async def ancestry(conn: Conn, pattern_id: str) -> dict[str, Any]:
    if not is_storable(pattern_id):  # text no stored node can hold (a NUL character)
        raise PatternNotFound(pattern_id)
    cur = await conn.execute(_ANCESTRY, {"pid": pattern_id})
    rows = await cur.fetchall()
    if not rows:
        raise PatternNotFound(pattern_id)
    ancestors = [{"ancestor_id": r[0], "ancestor_pattern_id": r[1], "generation": r[2], "edge_type": r[3],
                  "created_at": iso(r[4])} for r in rows]
    return {
        "pattern_id": pattern_id,
        "pattern_node_id": rows[0][0],
        "lineage_id": rows[0][5],
        "ancestors": ancestors,
        "ancestry_depth": len(ancestors) - 1,
        "total_ancestors": len(ancestors) - 1,
    }


async def descendants(conn: Conn, pattern_id: str) -> dict[str, Any]:
    if not is_storable(pattern_id):
        raise PatternNotFound(pattern_id)
    cur = await conn.execute(_DESCENDANTS, {"pid": pattern_id})
    rows = await cur.fetchall()
    if not rows:
        raise PatternNotFound(pattern_id)
    found = [{"descendant_id": r[1], "descendant_pattern_id": r[2], "edge_type": r[3],
              "transformation_type": r[4], "created_at": iso(r[5])} for r in rows if r[1] is not None]
    return {"pattern_id": pattern_id, "pattern_node_id": rows[0][0], "descendants": found,
            "total_descendants": len(found)}


async def file_query(conn: Conn, file_path: str | None, limit: int) -> list[dict[str, Any]]:
    """Nodes of ``file_path`` oldest first (every node when None), at most ``limit``; a notebook's
    cells (``NOTEBOOK#CELL``: the range [``NOTEBOOK#``, ``NOTEBOOK$``) in byte order) come too."""
    if limit <= 0 or (file_path is not None and not is_storable(file_path)):
        return []
    if file_path is None:
        cur = await conn.execute(f"SELECT {NODE} FROM lineage_nodes AS n ORDER BY n.seq LIMIT %s", (limit,))
    elif is_notebook(file_path):
        cur = await conn.execute(
            f"SELECT {NODE} FROM lineage_nodes AS n WHERE n.file_path = %(p)s "
            "OR (n.file_path >= %(p)s || '#' AND n.file_path < %(p)s || '$') ORDER BY n.seq LIMIT %(n)s",
            {"p": file_path, "n": limit})
    else:
        cur = await conn.execute(f"SELECT {NODE} FROM lineage_nodes AS n WHERE n.file_path = %s "
                                 "ORDER BY n.seq LIMIT %s",
                                 (file_path, limit))
    return [node_dict(r) for r in await cur.fetchall()]


async def get(conn: Conn, pattern_id: str, version: str | None) -> dict[str, Any] | None:
    if not is_storable(pattern_id) or (version is not None and not is_storable(version)):
        return None
    if version is None:
        cur = await conn.execute(f"SELECT {NODE} FROM lineage_nodes AS n WHERE n.pattern_id = %s "
                                 "ORDER BY n.seq DESC LIMIT 1", (pattern_id,))
    else:
        cur = await conn.execute(f"SELECT {NODE} FROM lineage_nodes AS n WHERE n.pattern_id = %s "
                                 "AND n.pattern_version = %s", (pattern_id, version))
    row = await cur.fetchone()
    return node_dict(row) if row is not None else None


async def count(conn: Conn) -> int:
    cur = await conn.execute("SELECT count(*) FROM lineage_nodes")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


# One summary per file of the page: counted and picked through the (file_path, seq) index.
_SUMMARIES = """
SELECT f.file_path, last.language, c.versions, first.created_at, last.created_at,
       last.pattern_data -> 'occurred_at', last.pattern_data -> 'session_id', last.tool_name,
       last.pattern_id, last.pattern_version, last.generation
FROM unnest(%s::text[]) WITH ORDINALITY AS f(file_path, ord)
CROSS JOIN LATERAL (SELECT count(*) AS versions FROM lineage_nodes WHERE file_path = f.file_path) AS c
CROSS JOIN LATERAL (SELECT created_at FROM lineage_nodes WHERE file_path = f.file_path ORDER BY seq LIMIT 1) AS first
CROSS JOIN LATERAL (SELECT * FROM lineage_nodes WHERE file_path = f.file_path ORDER BY seq DESC LIMIT 1) AS last
ORDER BY f.ord
"""

_CHUNK = 500  # paths read per round trip while a non-ASCII search filters them here


async def list_files(conn: Conn, search: str | None, after: str | None, limit: int) -> FilesPage:
    """One page of tracked files, :data:`~pattern_tracker.sinks.lineage_contract.FilesPage`:
    paths in byte (= code-point) order after ``after``, those holding ``search`` (any case); each
    summary as the LMDB store's listing gives it (:mod:`~pattern_tracker.sinks.lineage_listing`)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    if after and "\x00" in after:
        after = after.split("\x00", 1)[0]  # no stored path holds a NUL: the same paths sort past it
    if (search and not is_storable(search)) or (after and not is_storable(after)):
        return {"files": [], "next": None}
    needle = search.lower() if search else None
    paths = await _paths(conn, needle, after or "", limit + 1)
    more = len(paths) > limit
    paths = paths[:limit]
    files: list[dict[str, Any]] = []
    if paths:
        cur = await conn.execute(_SUMMARIES, (paths,))
        for r in await cur.fetchall():
            session = r[6]
            files.append({
                "file_path": r[0], "language": r[1], "versions": int(r[2]),
                "first_seen": iso(r[3]), "last_seen": iso(r[4]),
                "last_edit": edit_time(r[5]) or iso(r[4]),
                "last_session": session if isinstance(session, str) and session else None,
                "last_tool": r[7], "last_pattern_id": r[8], "last_pattern_version": r[9], "last_generation": r[10],
            })
    return {"files": files, "next": paths[-1] if more and paths else None}


async def _paths(conn: Conn, needle: str | None, after: str, want: int) -> list[str]:
    """Up to ``want`` file paths after ``after`` holding ``needle`` (lowercase), in order.

    An ASCII needle is matched by the database (``lower`` folds ASCII the same way whatever the
    collation); any other is matched here, as ``str.lower`` folds it, over the paths streamed in order.
    """
    if needle is None or needle.isascii():
        where = " AND strpos(lower(file_path), %(needle)s) > 0" if needle else ""
        cur = await conn.execute(f"SELECT file_path FROM lineage_files WHERE file_path > %(after)s{where} "
                                 "ORDER BY file_path LIMIT %(want)s", {"after": after, "needle": needle, "want": want})
        return [r[0] for r in await cur.fetchall()]
    found: list[str] = []
    while len(found) < want:
        cur = await conn.execute("SELECT file_path FROM lineage_files WHERE file_path > %s ORDER BY file_path LIMIT %s",
                                 (after, _CHUNK))
        chunk = [r[0] for r in await cur.fetchall()]
        found += [p for p in chunk if needle in p.lower()]
        if len(chunk) < _CHUNK:
            break
        after = chunk[-1]
    return found[:want]
