"""``pattern-tracker query``: read a lineage chain from the embedded store or the service.

Against the real Phase 4 service (which has no query-by-file endpoint) ``--file`` resolves the
file's newest pattern id from our own store (the version heads) and asks for its ancestry.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from pattern_tracker.config import Config
from pattern_tracker.identity import normalise_path


class QueryError(Exception):
    pass


def _print_json(doc: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n")


def _print_nodes(title: str, nodes: list[dict[str, Any]]) -> None:
    print(title)
    for n in nodes:
        parents = ",".join(n.get("parent_pattern_ids") or []) or "-"
        print(
            f"  v{n.get('pattern_version', '?'):<4} gen {n.get('generation', '?'):<3} {n.get('event_type', ''):<18} "
            f"{n.get('created_at', '')}  {n.get('pattern_id')}  parent {parents}"
        )


def _print_related(data: dict[str, Any], descendants: bool) -> None:
    if descendants:
        rows = data.get("descendants") or []
        print(f"{data.get('pattern_id')}: {len(rows)} descendant(s)")
        for r in rows:
            print(f"  {r.get('descendant_pattern_id')}  {r.get('edge_type') or '-'}  {r.get('transformation_type') or '-'}  {r.get('created_at')}")
        return
    rows = data.get("ancestors") or []
    print(f"{data.get('pattern_id')}: ancestry depth {data.get('ancestry_depth', len(rows))}")
    for r in rows:
        print(f"  gen {r.get('generation', '?'):<3} {r.get('ancestor_pattern_id')}  {r.get('edge_type') or '(self)'}  {r.get('created_at')}")


async def query_lineage(cfg: Config, pattern_id: str | None, file: str | None, descendants: bool, limit: int, as_json: bool) -> int:
    from pattern_tracker.assembly import open_store

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
            _print_json(nodes) if as_json else _print_nodes(f"{path}: {len(nodes)} version(s)", nodes)
            return 0
        assert pattern_id is not None
        try:
            data = lineage.descendants(pattern_id) if descendants else lineage.ancestry(pattern_id)
        except PatternNotFound:
            print(f"pattern {pattern_id} not found in the embedded store", file=sys.stderr)
            return 1
        _print_json(data) if as_json else _print_related(data, descendants)
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
                _print_json(nodes) if as_json else _print_nodes(f"{path}: {len(nodes)} version(s)", nodes)
                return 0
            head = store.head(path)
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
