"""Writing lineage to PostgreSQL: a batch of track events, or nodes copied from an embedded store.

The semantics are the embedded store's (:mod:`pattern_tracker.sinks.lineage_rules`, the same
functions): events run in list order, each validated statically then against the state as of
that point (nodes written earlier in the batch included); a failing event writes nothing and
leaves the others intact; node ids derive from the node key exactly as the LMDB store's do.

Round trips per batch, whatever its size: one to read what the batch refers to (the newest node
of each parent id, the keys that exist) and reserve ``seq`` values, one to write (nodes, edges,
files: one statement each over arrays), one to commit.

Concurrency: the unique key decides. Nodes are inserted with ``ON CONFLICT DO NOTHING
RETURNING``; when another transaction (another replica) took one of the batch's keys since the
read, fewer rows come back, and the attempt is rolled back and run again: the key then reads as
existing, so that event answers ``already_exists`` and the rest resolve against the winner's
node. Rows are inserted sorted by key, so two batches sharing keys wait for each other instead
of deadlocking; a deadlock or serialization failure all the same is retried too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg import errors as pg_errors

from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_contract import LineageValidationError, TrackResult
from pattern_tracker.sinks.lineage_layout import Node, NodeHead, node_key
from pattern_tracker.sinks.lineage_pg_sql import (
    ALLOCATE_SEQS,
    EXISTING_KEYS,
    INSERT_EDGES,
    INSERT_FILES,
    INSERT_NODES,
    NEWEST,
    UnstorableText,
    head_of,
    is_storable,
    node_rows,
    storable_json,
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

__all__ = ["ATTEMPTS", "RETRYABLE", "WriteConflict", "import_nodes", "track_batch"]

ATTEMPTS = 8  # tries of one batch when concurrent writers keep taking its keys (each retry sees more as existing)

# Errors after which the same transaction, run again, can succeed.
RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.ForeignKeyViolation)

_USAGE = frozenset({"track_application", "track_deprecation"})

Found = tuple[bytes, NodeHead]


class WriteConflict(Exception):
    """Another transaction wrote one of the batch's keys after this one read them: run it again."""


def _wanted(reqs: Sequence[TrackRequest],
            ops: Sequence[str | LineageValidationError]) -> tuple[list[str], list[str], list[str], int]:
    """(pattern ids whose newest node the batch may resolve, pids and versions of the keys it may
    create, how many nodes it may create). Text PostgreSQL cannot hold is left out of the lookups:
    nothing stored has it, and the event that carries it fails alone (see ``storable_json``)."""
    ids: set[str] = set()
    pids: list[str] = []
    versions: list[str] = []
    creating = 0
    for req, op in zip(reqs, ops):
        if isinstance(op, LineageValidationError):
            continue
        if op in _USAGE:
            ids.add(req.pattern_id)
            continue
        ids.update(req.parent_pattern_ids)
        creating += 1
        if is_storable(req.pattern_id) and is_storable(req.pattern_version):
            pids.append(req.pattern_id)
            versions.append(req.pattern_version)
    return sorted(i for i in ids if is_storable(i)), pids, versions, creating


def _static(req: TrackRequest) -> str | LineageValidationError:
    try:
        return static_check(req)
    except LineageValidationError as exc:
        return exc


async def track_batch(conn: psycopg.AsyncConnection[Any], reqs: Sequence[TrackRequest],
                      before_commit: Callable[[], None] | None = None) -> list[TrackResult]:
    """Track ``reqs`` in one transaction on ``conn`` (idle, not autocommit-dependent), one result each;
    retried from the start on a write conflict (see the module's doc)."""
    reqs = list(reqs)
    ops = [_static(req) for req in reqs]
    for attempt in range(ATTEMPTS):
        try:
            return await _attempt(conn, reqs, ops, before_commit)
        except (WriteConflict, *RETRYABLE):
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def _attempt(conn: psycopg.AsyncConnection[Any], reqs: list[TrackRequest],
                   ops: list[str | LineageValidationError],
                   before_commit: Callable[[], None] | None) -> list[TrackResult]:
    ids, pids, versions, creating = _wanted(reqs, ops)
    async with conn.transaction():
        async with conn.pipeline():
            cur_newest = await conn.execute(NEWEST, (ids,)) if ids else None
            cur_keys = await conn.execute(EXISTING_KEYS, (pids, versions)) if pids else None
            cur_seqs = await conn.execute(ALLOCATE_SEQS, (creating,)) if creating else None
            newest: dict[str, Found] = {}
            if cur_newest is not None:
                for row in await cur_newest.fetchall():
                    head = head_of(row)
                    newest[head.pattern_id] = (node_key(head.pattern_id, head.pattern_version), head)
            existing: dict[tuple[str, str], NodeHead] = {}
            if cur_keys is not None:
                for row in await cur_keys.fetchall():
                    head = head_of(row)
                    existing[(head.pattern_id, head.pattern_version)] = head
            seqs = sorted(int(r[0]) for r in await cur_seqs.fetchall()) if cur_seqs is not None else []
        out, made, edges = _execute(reqs, ops, newest, existing, seqs)
        if made:
            async with conn.pipeline():
                cur = await conn.execute(INSERT_NODES, node_rows(made))
                if edges.child:
                    await conn.execute(INSERT_EDGES, edges.params())
                files = sorted({node.file_path for node, _ in made if node.file_path})
                if files:
                    await conn.execute(INSERT_FILES, (files,))
                inserted = len(await cur.fetchall())
            if inserted != len(made):
                raise WriteConflict
        if before_commit is not None:
            before_commit()
    return out


def _execute(reqs: list[TrackRequest], ops: list[str | LineageValidationError], newest: dict[str, Found],
             existing: dict[tuple[str, str], NodeHead],
             seqs: list[int]) -> tuple[list[TrackResult], list[tuple[Node, str]], _Edges]:
    """The batch's results, the nodes it creates (with their pattern_data JSON) and their edges, as the LMDB store's
    ``track_many`` decides them, over the state just read."""
    now = now_iso()  # one timestamp per transaction, like the service's NOW()
    made: dict[str, Found] = {}  # pattern_id -> the newest node written earlier in this batch

    def lookup(pattern_id: str) -> Found | None:
        found = made.get(pattern_id)
        return found if found is not None else newest.get(pattern_id)

    out: list[TrackResult] = []
    created: list[tuple[Node, str]] = []
    edges = _Edges()
    next_seq = 0
    for req, op in zip(reqs, ops):
        if isinstance(op, LineageValidationError):
            out.append(op)
            continue
        try:
            if op in _USAGE:
                out.append(usage_data(req, op, now, lookup))
                continue
            key = (req.pattern_id, req.pattern_version)
            head = existing.get(key)
            if head is not None:
                out.append(already_exists_data(head))
                continue
            parents = resolve_parents(req, op, lookup)
            nkey = node_key(req.pattern_id, req.pattern_version)
            node = new_node(req, op, nkey, seqs[next_seq], now, parents)
            try:
                data = storable_json(node)
            except UnstorableText as exc:
                raise LineageValidationError(f"Validation error: PostgreSQL cannot store {exc}",
                                             kind="execution") from exc
            next_seq += 1
            made[req.pattern_id] = (nkey, node)
            existing[key] = node
            created.append((node, data))
            edges.add(node, parents)
            out.append(created_data(node, op))
        except LineageValidationError as exc:
            out.append(exc)
    return out, created, edges


class _Edges:
    """INSERT_EDGES' arrays: the parent links of the nodes a batch creates (parents by seq)."""

    def __init__(self) -> None:
        self.child: list[int] = []
        self.position: list[int] = []
        self.parent: list[int] = []
        self.edge_type: list[str] = []
        self.transformation: list[str | None] = []

    def add(self, node: Node, parents: Sequence[Found]) -> None:
        for pos, (_, head) in enumerate(parents):
            self.child.append(node.seq)
            self.position.append(pos)
            self.parent.append(head.seq)
            self.edge_type.append(node.edge_type or "modified_from")
            self.transformation.append(node.transformation_type)

    def params(self) -> tuple[list[Any], ...]:
        return self.child, self.position, self.parent, self.edge_type, self.transformation


# -- copying an embedded store ------------------------------------------------------------------

_IMPORT_EDGES = """
INSERT INTO lineage_edges (child_seq, position, parent_seq, edge_type, transformation_type)
SELECT c.seq, e.position, p.seq, e.edge_type, e.tt
FROM unnest(%b::uuid[], %b::smallint[], %b::uuid[], %b::text[], %b::text[]) AS e(child, position, parent, edge_type, tt)
JOIN lineage_nodes AS c ON c.node_id = e.child
JOIN lineage_nodes AS p ON p.node_id = e.parent
WHERE c.seq = ANY(%b::bigint[])
ON CONFLICT DO NOTHING
"""


async def import_nodes(conn: psycopg.AsyncConnection[Any], nodes: Sequence[Node]) -> int:
    """Insert already-stored nodes (see ``PostgresLineage.import_nodes``) in one transaction; returns
    how many were new. Their parents are linked by node id (in this call or already stored)."""
    if not nodes:
        return 0
    async with conn.transaction():
        cur = await conn.execute(ALLOCATE_SEQS, (len(nodes),))
        seqs = sorted(int(r[0]) for r in await cur.fetchall())
        rows: list[tuple[Node, str]] = []
        for node, seq in zip(nodes, seqs):
            copy = msgspec.structs.replace(node, seq=seq)
            try:
                rows.append((copy, storable_json(copy)))
            except UnstorableText as exc:
                raise UnstorableText(f"node {node.pattern_id!r} version {node.pattern_version!r} holds {exc}, "
                                     "which PostgreSQL cannot store") from exc
        cur = await conn.execute(INSERT_NODES, node_rows(rows))
        inserted = [int(r[0]) for r in await cur.fetchall()]
        if not inserted:
            return 0
        child: list[str] = []
        position: list[int] = []
        parent: list[str] = []
        edge_type: list[str] = []
        transformation: list[str | None] = []
        for node, _ in rows:
            for pos, pid in enumerate(node.parent_node_ids):
                child.append(node.node_id)
                position.append(pos)
                parent.append(pid)
                edge_type.append(node.edge_type or "modified_from")
                transformation.append(node.transformation_type)
        if child:
            await conn.execute(_IMPORT_EDGES, (child, position, parent, edge_type, transformation, inserted))
        files = sorted({node.file_path for node, _ in rows if node.file_path})
        if files:
            await conn.execute(INSERT_FILES, (files,))
    return len(inserted)
