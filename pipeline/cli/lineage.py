"""``pattern-tracker lineage copy --from DATA_DIR --to postgresql://…``: moving a team's embedded
lineage store into PostgreSQL, for ``serve --store``.

Resumable and idempotent (the use case, :mod:`pattern_tracker.usecases.lineage_copy`): run it
again after an interruption and it copies what is missing; a second full run copies 0. Exit 0
copied (or nothing to copy), 1 the database could not be reached or failed part way (what was
copied stays: run it again), 2 usage (a bad URL, DATA_DIR without a store), 130 interrupted.
The target's password is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import msgspec

from pattern_tracker.cli.support import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    action_group,
    add_action,
    install_stop,
    load,
    print_json,
)

DEFAULT_CHUNK = 1000


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``lineage copy``."""
    g = action_group(sub, common, "lineage", "the lineage store: copy an embedded store into PostgreSQL",
                     "lineage_command")
    p = add_action(g, common, "copy", "copy the embedded lineage store of DATA_DIR into PostgreSQL "
                   "(resumable: run it again after an interruption; a second run copies 0)", cmd_copy)
    p.add_argument("--from", dest="source", metavar="DATA_DIR", required=True,
                   help="data directory of the embedded store (storage.data_dir of the serve that used it)")
    p.add_argument("--to", dest="target", metavar="URL", required=True,
                   help="postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (the schema is created if missing)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help=f"nodes per transaction (default {DEFAULT_CHUNK})")


def cmd_copy(args: argparse.Namespace) -> int:
    from pattern_tracker.logs import add_secret
    from pattern_tracker.settings.store_url import mask_store_url, store_password, store_url_problem

    cfg = load(args).config
    problem = store_url_problem(args.target)
    if problem is not None:
        raise CliError(f"--to {mask_store_url(args.target)}: {problem}", EXIT_USAGE)
    add_secret(store_password(args.target))
    if args.chunk < 1:
        raise CliError("--chunk must be >= 1", EXIT_USAGE)
    if not os.path.isfile(os.path.join(args.source, "data.mdb")):
        raise CliError(f"--from {args.source}: no pattern-tracker store there (no data.mdb)", EXIT_USAGE)
    return asyncio.run(_copy(cfg, args))


async def _copy(cfg: Any, args: argparse.Namespace) -> int:
    from pattern_tracker.settings.store_url import mask_store_url
    from pattern_tracker.cli.progress import Progress
    from pattern_tracker.composition import postgres_lineage
    from pattern_tracker.core.store import MIB, Store
    from pattern_tracker.sinks.lineage_contract import LineageUnavailable
    from pattern_tracker.sinks.lineage_export import NodeExport
    from pattern_tracker.usecases.lineage_copy import copy_lineage

    shown = mask_store_url(args.target)
    try:
        target = postgres_lineage(cfg, args.target)
    except ValueError as exc:  # libpq refused the URL's options (e.g. an unknown ?parameter)
        raise CliError(f"--to: {exc}", EXIT_USAGE) from None
    store = Store.open(args.source, map_size=cfg.storage.map_size_mb * MIB, max_map_size=cfg.storage.max_map_size_mb * MIB)
    stop = asyncio.Event()
    install_stop(stop)
    try:
        export = NodeExport(store)
        bar = Progress(len(export), label="copy", unit="nodes")
        try:
            await target.start()
            result = await copy_lineage(export, target, chunk_size=args.chunk, on_progress=bar.update, stop=stop)
        except LineageUnavailable as exc:
            bar.finish()
            if not bar.done:
                raise CliError(f"lineage copy: cannot use {shown}: {exc.reason}", EXIT_FAILURE) from None
            raise CliError(f"lineage copy to {shown} stopped after {bar.done} of {len(export)} nodes: {exc.reason}; "
                           "what was copied stays: run it again to copy the rest", EXIT_FAILURE) from None
        except ValueError as exc:  # a node PostgreSQL cannot hold (UnstorableText names it)
            bar.finish()
            raise CliError(f"lineage copy to {shown} stopped after {bar.done} of {len(export)} nodes: {exc}",
                           EXIT_FAILURE) from None
    finally:
        await target.close()
        store.close()
    bar.finish()
    line = (f"lineage copy: copied {result.copied}, already there {result.already_there} "
            f"(of {result.source_nodes} nodes) into {shown} ({result.seconds:.1f}s)")
    if result.interrupted:
        line += f"; interrupted after {result.done}: run it again to copy the rest"
    if args.json:
        print_json({**msgspec.to_builtins(result), "target": shown})
    else:
        print(line)
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK
