"""The PostgreSQL lineage schema and its migrations, applied at start under an advisory lock.

The shape is the Phase 4 service's: a node per (pattern_id, pattern_version) (UNIQUE: the
constraint decides between two replicas inserting one key at once), parent edges carrying the
edge and transformation type, generation, created time. Plus what serve's own answers need:

* ``lineage_nodes``  one row per node; ``seq`` (bigserial) is the insertion order: the newest
  node of a pattern id is its highest ``seq``. Indexes: (pattern_id, pattern_version) UNIQUE
  (a key's node, the duplicate check), (pattern_id, seq DESC) (the newest node of a pattern),
  (file_path, seq) (a file's nodes in order; a notebook's cells are a range of it), node_id
  UNIQUE (the nodes an import links to).
* ``lineage_edges``  parent -> child by ``seq``, ``position`` in the child's parent list.
  Primary key (child_seq, position) walks up (ancestry); (parent_seq, child_seq) walks down.
* ``lineage_files``  every distinct file_path: the UI's file listing pages through it by path.
* ``lineage_schema_version``  one row per applied migration.

Text keys use the "C" collation: byte order, which for UTF-8 is code-point order (the listing's
order) whatever the database's locale, and cheap comparisons.

:data:`MIGRATIONS` is ordered; a later schema version appends ``(version, sql)`` steps and
never edits an applied one. :func:`migrate` creates or upgrades idempotently: two replicas
starting at once serialise on ``pg_advisory_lock`` and the second finds nothing to do.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ADVISORY_LOCK_KEY", "MIGRATIONS", "SCHEMA_VERSION", "SchemaTooNew", "migrate"]

# pg_advisory_lock key of the migration (any bigint; "pattern-tracker lineage" in spirit).
ADVISORY_LOCK_KEY = 0x5054_4C49_4E45_4147  # b"PTLINEAG"

_V1 = """
CREATE TABLE lineage_nodes (
    seq                 bigserial PRIMARY KEY,
    node_id             uuid NOT NULL,
    lineage_id          uuid NOT NULL,
    event_id            text NOT NULL,
    pattern_id          text COLLATE "C" NOT NULL,
    pattern_version     text COLLATE "C" NOT NULL,
    pattern_name        text NOT NULL,
    pattern_type        text NOT NULL,
    event_type          text NOT NULL,
    generation          integer NOT NULL,
    created_at          timestamptz NOT NULL,
    file_path           text COLLATE "C",
    language            text,
    tool_name           text,
    triggered_by        text NOT NULL,
    reason              text,
    edge_type           text,
    transformation_type text,
    parent_pattern_ids  text[] NOT NULL DEFAULT '{}',
    parent_node_ids     uuid[] NOT NULL DEFAULT '{}',
    pattern_data        jsonb NOT NULL,
    CONSTRAINT lineage_nodes_key UNIQUE (pattern_id, pattern_version),
    CONSTRAINT lineage_nodes_node_id UNIQUE (node_id)
);
CREATE INDEX lineage_nodes_newest ON lineage_nodes (pattern_id, seq DESC);
CREATE INDEX lineage_nodes_file ON lineage_nodes (file_path, seq) WHERE file_path IS NOT NULL;

CREATE TABLE lineage_edges (
    child_seq           bigint NOT NULL REFERENCES lineage_nodes (seq) ON DELETE CASCADE,
    position            smallint NOT NULL,
    parent_seq          bigint NOT NULL REFERENCES lineage_nodes (seq) ON DELETE CASCADE,
    edge_type           text NOT NULL,
    transformation_type text,
    PRIMARY KEY (child_seq, position)
);
CREATE INDEX lineage_edges_children ON lineage_edges (parent_seq, child_seq);

CREATE TABLE lineage_files (
    file_path text COLLATE "C" PRIMARY KEY
);
"""

MIGRATIONS: list[tuple[int, str]] = [
    (1, _V1),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS lineage_schema_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer pattern-tracker than this one."""

    def __init__(self, found: int) -> None:
        super().__init__(f"schema version {found} is newer than this pattern-tracker knows ({SCHEMA_VERSION}): "
                         "upgrade pattern-tracker")
        self.found = found


async def migrate(conn: Any) -> list[int]:
    """Create or upgrade the schema on ``conn`` (an autocommit psycopg AsyncConnection).

    Holds the session advisory lock for the whole check, so concurrent starts run one at a time;
    each step commits together with its ``lineage_schema_version`` row (DDL is transactional in
    PostgreSQL), so a crash mid-upgrade leaves the previous version whole. Returns the versions
    applied now (empty when the schema was current).
    """
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        await conn.execute(_VERSION_TABLE)
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM lineage_schema_version")
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(current)
        for version, sql in MIGRATIONS:
            if version <= current:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO lineage_schema_version (version) VALUES (%s)", (version,))
            applied.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied
