"""``pattern-tracker query``: show a lineage chain (the use case usecases.query reads it)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone
from typing import Any

import msgspec

from pattern_tracker.cli.support import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError, bounded, load
from pattern_tracker.usecases.query import LineageAnswer, edit_time, query_lineage


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``query``."""
    p = sub.add_parser("query", parents=[common], help="print the lineage chain of a pattern or a file")
    p.add_argument("pattern_id", nargs="?", help="pattern id (any version of the chain)")
    p.add_argument("--file", metavar="PATH", help="the chain of this file instead")
    p.add_argument("--descendants", action="store_true", help="descendants instead of ancestry")
    p.add_argument("--limit", type=bounded(int, 1), default=100, metavar="N",
                   help="at most N versions (--file; default 100)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    cfg = load(args).config
    if bool(args.pattern_id) == bool(args.file):
        raise CliError("query needs exactly one of PATTERN_ID or --file PATH", EXIT_USAGE)
    if args.descendants and args.file:  # a file's versions are listed oldest first: no direction to pick
        raise CliError("--descendants goes with a PATTERN_ID, not --file (a file's versions are its whole chain)",
                       EXIT_USAGE)
    answer = asyncio.run(query_lineage(cfg, args.pattern_id, args.file, args.descendants, args.limit))
    return show(answer, args.descendants, args.json)


def show(answer: LineageAnswer, descendants: bool, as_json: bool) -> int:
    if answer.kind == "missing":
        print(answer.message, file=sys.stderr)
        return EXIT_FAILURE
    if answer.kind == "versions":
        _print_json(answer.nodes) if as_json else _print_nodes(str(answer.path), answer.nodes)
    elif answer.kind == "related":
        assert answer.data is not None
        _print_json(answer.data) if as_json else _print_related(answer.data, descendants, answer.edited)
    else:
        _print_cells(str(answer.path), answer.cells, descendants, as_json, str(answer.source))
    return EXIT_OK


def _print_json(doc: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n")


def _when(edited: float | None, received: Any) -> str:
    if edited is not None:
        try:
            return datetime.fromtimestamp(edited, timezone.utc).isoformat(timespec="milliseconds")
        except (OverflowError, ValueError, OSError):  # past the year 9999 (stored before times were checked)
            return f"{edited:g} (not a date)"
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


def _print_cells(path: str, found: dict[str, Any], descendants: bool, as_json: bool, url: str) -> None:
    """A notebook against a service without query by file: the lineage of each cell's newest version."""
    if as_json:
        _print_json({"file_path": path, "cells": found})
        return
    print(f"{path}: {len(found)} cell(s) (from {url}); one cell: query --file '{next(iter(found))}'")
    for cell_path, data in found.items():
        print(f"cell {cell_path[len(path) + 1:]}:")
        if data is None:
            print(f"  not found at {url}")
        else:
            _print_related(data, descendants)
