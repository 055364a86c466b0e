"""Reading a lineage chain from the embedded store or the service (``pattern-tracker query``).

Against the real Phase 4 service (which has no query-by-file endpoint) ``--file`` resolves the
file's newest pattern id from our own store (the version heads) and asks for its ancestry.

Times shown are when the edit happened (``occurred_at``, which every event carries in its
``pattern_data``), not when the store received it; a version stored without one (older stores,
the service's ancestry rows) shows the received time marked ``(received)``. A notebook's cells
are tracked one by one (``nb.ipynb#CELL_ID``): ``--file nb.ipynb`` lists every cell.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from pattern_tracker.core.identity import normalise_path
from pattern_tracker.settings.config import Config
from pattern_tracker.sinks.lineage_store import is_notebook


class LineageAnswer(msgspec.Struct):
    """What a query found, for a face to show: ``versions`` of a file, one node's ``related``
    (ancestry or descendants), a notebook's ``cells`` asked of the service one by one, or ``missing``
    (``message`` says what)."""

    kind: Literal["versions", "related", "cells", "missing"]
    path: str | None = None
    nodes: list[dict[str, Any]] = msgspec.field(default_factory=list)
    data: dict[str, Any] | None = None
    edited: dict[str, float] = msgspec.field(default_factory=dict)  # node id -> edit time (embedded answers)
    cells: dict[str, Any] = msgspec.field(default_factory=dict)  # cell path -> lineage answer or None
    source: str | None = None  # the service URL, when it answered
    message: str = ""


def edit_time(node: dict[str, Any]) -> float | None:
    """When the edit of a stored version happened (epoch s), or None when it was stored without it."""
    data = node.get("pattern_data")
    at = data.get("occurred_at") if isinstance(data, dict) else None
    return float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) and at > 0 else None


def _edit_times(lineage: Any, data: dict[str, Any], descendants: bool) -> dict[str, float]:
    """Edit times of the rows of an embedded ancestry/descendants answer (node id -> epoch s)."""
    key, ids = ("descendant", "descendants") if descendants else ("ancestor", "ancestors")
    out: dict[str, float] = {}
    for r in data.get(ids) or []:
        node = lineage.get(str(r.get(f"{key}_pattern_id")))
        at = edit_time(node) if node is not None and node.get("pattern_node_id") == r.get(f"{key}_id") else None
        if at is not None:
            out[str(r.get(f"{key}_id"))] = at
    return out


async def query_lineage(cfg: Config, pattern_id: str | None, file: str | None, descendants: bool, limit: int) -> LineageAnswer:
    from pattern_tracker.composition import open_store

    store = open_store(cfg)
    query_type = "descendants" if descendants else "ancestry"
    if not cfg.api.url:
        from pattern_tracker.sinks.lineage_store import LineageStore, PatternNotFound

        lineage = LineageStore(store)
        if file:
            path = normalise_path(file)
            nodes = lineage.query(path, limit)
            if not nodes:
                return LineageAnswer("missing", path=path, message=f"no versions of {path} in the embedded store")
            return LineageAnswer("versions", path=path, nodes=nodes)
        assert pattern_id is not None
        try:
            data = lineage.descendants(pattern_id) if descendants else lineage.ancestry(pattern_id)
        except PatternNotFound:
            return LineageAnswer("missing", message=f"pattern {pattern_id} not found in the embedded store")
        return LineageAnswer("related", data=data, edited=_edit_times(lineage, data, descendants))

    from pattern_tracker.sinks.http import HttpSink

    a = cfg.api
    sink = HttpSink(a.url, token=a.token, verify_tls=a.verify_tls, connect_timeout=a.timeouts.connect,
                    read_timeout=a.timeouts.read, total_timeout=a.timeouts.total)
    await sink.start()
    try:
        if file:
            path = normalise_path(file)
            nodes = await sink.query_file(path, limit)
            if nodes:
                return LineageAnswer("versions", path=path, nodes=nodes, source=a.url)
            head = store.head(path)
            if head is None and is_notebook(path):
                cells = store.heads_under(path + "#")
                if cells:  # the service has no query by file: each cell's ancestry, from its newest version
                    found = {cell.path: await sink.get_lineage(cell.pattern_id, query_type) for cell in cells}
                    return LineageAnswer("cells", path=path, cells=found, source=a.url)
            if head is None:
                return LineageAnswer("missing", path=path, message=f"no versions of {path} known to this data directory")
            pattern_id = head.pattern_id
        assert pattern_id is not None
        data = await sink.get_lineage(pattern_id, query_type)
        if data is None:
            return LineageAnswer("missing", message=f"pattern {pattern_id} not found at {a.url}")
        return LineageAnswer("related", data=data, source=a.url)
    finally:
        await sink.close()
