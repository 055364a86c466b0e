"""``pattern-tracker query``: read a lineage chain from the embedded store or the service.

Against the real Phase 4 service (which has no query-by-file endpoint) ``--file`` resolves the
file's newest pattern id from our own store (the version heads) and asks for its ancestry.

Times shown are when the edit happened (``occurred_at``, which every event carries in its
``pattern_data``), not when the store received it; a version stored without one (older stores,
the service's ancestry rows) shows the received time marked ``(received)``. A notebook's cells
are tracked one by one (``nb.ipynb#CELL_ID``): ``--file nb.ipynb`` lists every cell.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

import msgspec

from pattern_tracker.settings.config import Config
from pattern_tracker.core.identity import normalise_path
from pattern_tracker.sinks.lineage_store import is_notebook


class QueryError(Exception):
    pass


def _print_json(doc: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n")


def edit_time(node: dict[str, Any]) -> float | None:
    """When the edit of a stored version happened (epoch s), or None when it was stored without it."""
    data = node.get("pattern_data")
    at = data.get("occurred_at") if isinstance(data, dict) else None
    return float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) and at > 0 else None


def _when(edited: float | None, received: Any) -> str:
    if edited is not None:
        return datetime.fromtimestamp(edited, timezone.utc).isoformat(timespec="milliseconds")
    return f"{received or '?'} (received)"


def _print_nodes(path: str, nodes: list[dict[str, Any]]) -> None:
    """Versions oldest first; a notebook's versions grouped by cell, with how to ask for one cell."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for n in nodes:
        by_file.setdefault(str(n.get("file_path") or path), []).append(n)
    cells = [f for f in by_file if f != path]
    if not cells:
        print(f"{path}: {len(nodes)} version(s) (time of the edit, UTC)")
        _print_versions(nodes)
        return
    print(f"{path}: {len(cells)} cell(s), {len(nodes)} version(s) (time of the edit, UTC); "
          f"one cell: query --file '{cells[0]}'")
    for f, group in by_file.items():
        print(f"  {'cell ' + f[len(path) + 1:] if f != path else '(whole notebook)'}: {len(group)} version(s)")
        _print_versions(group, indent="    ")


def _print_versions(nodes: list[dict[str, Any]], indent: str = "  ") -> None:
    for n in nodes:
        parents = ",".join(n.get("parent_pattern_ids") or []) or "-"
        print(
            f"{indent}v{n.get('pattern_version', '?'):<4} gen {n.get('generation', '?'):<3} {n.get('event_type', ''):<18} "
            f"{_when(edit_time(n), n.get('created_at'))}  {n.get('pattern_id')}  parent {parents}"
        )


def _print_related(data: dict[str, Any], descendants: bool, edited: dict[str, float] | None = None) -> None:
    """Ancestry or descendants; ``edited`` maps node ids to edit times where known (else: received)."""
    edited = edited or {}
    if descendants:
        rows = data.get("descendants") or []
        print(f"{data.get('pattern_id')}: {len(rows)} descendant(s)")
        for r in rows:
            print(f"  {r.get('descendant_pattern_id')}  {r.get('edge_type') or '-'}  {r.get('transformation_type') or '-'}  "
                  f"{_when(edited.get(str(r.get('descendant_id'))), r.get('created_at'))}")
        return
    rows = data.get("ancestors") or []
    print(f"{data.get('pattern_id')}: ancestry depth {data.get('ancestry_depth', len(rows))}")
    for r in rows:
        print(f"  gen {r.get('generation', '?'):<3} {r.get('ancestor_pattern_id')}  {r.get('edge_type') or '(self)'}  "
              f"{_when(edited.get(str(r.get('ancestor_id'))), r.get('created_at'))}")


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


async def query_lineage(cfg: Config, pattern_id: str | None, file: str | None, descendants: bool, limit: int, as_json: bool) -> int:
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
                print(f"no versions of {path} in the embedded store", file=sys.stderr)
                return 1
            _print_json(nodes) if as_json else _print_nodes(path, nodes)
            return 0
        assert pattern_id is not None
        try:
            data = lineage.descendants(pattern_id) if descendants else lineage.ancestry(pattern_id)
        except PatternNotFound:
            print(f"pattern {pattern_id} not found in the embedded store", file=sys.stderr)
            return 1
        _print_json(data) if as_json else _print_related(data, descendants, _edit_times(lineage, data, descendants))
        return 0

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
                _print_json(nodes) if as_json else _print_nodes(path, nodes)
                return 0
            head = store.head(path)
            if head is None and is_notebook(path):
                cells = store.heads_under(path + "#")
                if cells:  # the service has no query by file: each cell's ancestry, from its newest version
                    return await _cells_from_service(sink, path, cells, query_type, descendants, as_json, a.url)
            if head is None:
                print(f"no versions of {path} known to this data directory", file=sys.stderr)
                return 1
            pattern_id = head.pattern_id
        assert pattern_id is not None
        data = await sink.get_lineage(pattern_id, query_type)
        if data is None:
            print(f"pattern {pattern_id} not found at {a.url}", file=sys.stderr)
            return 1
        _print_json(data) if as_json else _print_related(data, descendants)
        return 0
    finally:
        await sink.close()


async def _cells_from_service(sink: Any, path: str, cells: list[Any], query_type: str, descendants: bool,
                              as_json: bool, url: str) -> int:
    """A notebook against a service without query by file: the lineage of each cell's newest version."""
    found: dict[str, Any] = {}
    for head in cells:
        found[head.path] = await sink.get_lineage(head.pattern_id, query_type)
    if as_json:
        _print_json({"file_path": path, "cells": found})
        return 0
    print(f"{path}: {len(cells)} cell(s) (from {url}); one cell: query --file '{cells[0].path}'")
    for cell_path, data in found.items():
        print(f"cell {cell_path[len(path) + 1:]}:")
        if data is None:
            print(f"  not found at {url}")
        else:
            _print_related(data, descendants)
    return 0
