"""``run``, ``watch``, ``serve`` and ``config`` (and the help of ``hook``, which main runs before
any of this is imported). Exit codes: cli.app; 130 here means interrupted before a clean start or
while waiting for room in a full spool.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from pattern_tracker.cli.running import run_sources
from pattern_tracker.cli.support import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    load,
    stderr_line,
)

log = logging.getLogger("pattern_tracker.main")


# ---------------------------------------------------------------------------------------
# Helpers


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``run``, ``watch``, ``serve``, ``query``, ``config`` and ``hook`` (its help; main runs it)."""
    from pattern_tracker.settings.locations import shipped_chaos_names

    p = sub.add_parser("run", parents=[common], help="run the pipeline with the sources from config (default: watch .)")
    p.add_argument("--source", action="append", choices=["watch", "stdin"], help="override sources.enabled (repeatable)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="trees to watch (default: sources.watch.paths)")
    p.add_argument("--json", action="store_true", help="at the end, also print the summary as JSON on stdout")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("watch", parents=[common], help="watch DIR… and deliver every change")
    p.add_argument("paths", nargs="+", metavar="DIR")
    p.add_argument("--json", action="store_true", help="at the end, also print the summary as JSON on stdout")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("serve", parents=[common],
                       help="serve the Phase 4 API over the embedded lineage store, or PostgreSQL (--store)")
    p.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    p.add_argument("--store", metavar="URL", default=None,
                   help="lineage store: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, shared by every replica "
                   "(default: serve.store; none = the embedded LMDB store in storage.data_dir)")
    p.add_argument("--port", type=int, default=None, help="port (default: serve.port, 8053; 0 = any free port)")
    p.add_argument("--chaos", metavar="FILE|NAME", default=None,
                   help="inject faults on the schedule in FILE, or a shipped one by NAME: "
                   f"{', '.join(shipped_chaos_names())} (docs/chaos.md)")
    p.add_argument("--seed", metavar="N", type=int, default=None,
                   help="seed of the chaos decisions (overrides the schedule's seed; same seed, same decisions)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("config", parents=[common], help="show or validate configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    c = csub.add_parser("show", parents=[common], help="the effective config with the origin of every value")
    c.add_argument("--format", choices=["text", "yaml", "json"], default="text")
    c.set_defaults(func=cmd_config_show)
    c = csub.add_parser("validate", parents=[common], help="check a config file (defaults + FILE, no env)")
    c.add_argument("file", metavar="FILE")
    c.set_defaults(func=cmd_config_validate)

    p = sub.add_parser(
        "hook",
        parents=[common],
        help="the Claude Code PostToolUse hook: read the payload on stdin, spool the change, exit 0",
        description="Run by Claude Code after Write/Edit/MultiEdit/NotebookEdit with the PostToolUse JSON on "
        "stdin. Always exits 0; problems go to its log file (hook.log_file). Install it with install-hook.",
    )
    p.add_argument("--verbose", action="store_true", help="print what was recorded on stdout")


# ---------------------------------------------------------------------------------------
# run / watch


def cmd_run(args: argparse.Namespace) -> int:
    loaded = load(args)
    cfg = loaded.config
    if not cfg.pattern_tracking.enabled:
        stderr_line(f"pattern tracking is disabled (pattern_tracking.enabled = false, from {loaded.origins.get('pattern_tracking.enabled')})")
        return EXIT_OK
    kinds = args.source or list(cfg.sources.enabled)
    if args.paths and "watch" not in kinds:  # PATHs are what the watch source watches
        raise CliError(f"PATH {args.paths[0]} is for the watch source, which this run does not have "
                       f"(sources: {', '.join(kinds)}); add --source watch", EXIT_USAGE)
    paths = args.paths or list(cfg.sources.watch.paths)
    return asyncio.run(run_sources(cfg, kinds, paths, as_json=args.json))


def cmd_watch(args: argparse.Namespace) -> int:
    loaded = load(args)
    return asyncio.run(run_sources(loaded.config, ["watch"], args.paths, as_json=args.json))


def cmd_serve(args: argparse.Namespace) -> int:
    loaded = load(args)
    cfg = loaded.config
    from pattern_tracker.composition import open_lineage_backend
    from pattern_tracker.service.serve import ListenError, run_server, settle_garbage_collection
    from pattern_tracker.web import explorer
    from pattern_tracker.sinks.lineage_contract import LineageUnavailable

    _check_store_option(args.store)
    host = args.host or cfg.serve.host
    port = cfg.serve.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise CliError(f"--port {port} is out of range 0..65535", EXIT_USAGE)
    chaos = None
    if args.chaos is not None:
        from pattern_tracker.service.chaos import Chaos, load_schedule

        schedule = _chaos_schedule_file(args.chaos)
        chaos = Chaos(load_schedule(schedule), seed=args.seed, source=schedule)  # ChaosScheduleError: exit 2
    elif args.seed is not None:
        raise CliError("--seed needs --chaos FILE", EXIT_USAGE)
    try:
        lineage, shown = open_lineage_backend(cfg, args.store)
    except ValueError as exc:  # libpq refused the URL's options (e.g. an unknown ?parameter)
        if args.store is None and cfg.serve.store is None:
            raise  # the embedded store's, not a URL's: not a usage error (app's last line of defence)
        raise CliError(f"{'--store' if args.store else 'serve.store'}: {exc}", EXIT_USAGE) from None
    try:
        asyncio.run(
            run_server(
                host,
                port,
                lineage=lineage,
                token=cfg.serve.token,
                max_request_bytes=cfg.serve.max_request_bytes,
                rate_limit_per_minute=cfg.serve.rate_limit_per_minute,
                chaos=chaos,
                store=shown,
                setup=explorer.install,  # the lineage explorer's pages (docs/web-ui.md)
                ready=lambda _url: settle_garbage_collection(),
            )
        )
    except ListenError as exc:  # a busy port is the user's to change: usage error (2), one line
        hint = "choose another with --port N (--port 0 picks a free one)" if exc.port_problem else "check --host"
        raise CliError(f"{exc}; {hint}", EXIT_USAGE) from None
    except LineageUnavailable as exc:  # the database down or refusing us at start: one line, exit 1
        raise CliError(f"cannot open the lineage store {shown}: {exc.reason}", EXIT_FAILURE) from None
    return EXIT_OK


def _check_store_option(url: str | None) -> None:
    """``--store``: a PostgreSQL URL (exit 2 otherwise); its password is masked in every log line."""
    if url is None:
        return
    from pattern_tracker.logs import add_secret
    from pattern_tracker.settings.store_url import mask_store_url, store_password, store_url_problem

    problem = store_url_problem(url)
    if problem is not None:
        raise CliError(f"--store {mask_store_url(url)}: {problem}", EXIT_USAGE)
    add_secret(store_password(url))


def _chaos_schedule_file(arg: str) -> str:
    """``--chaos`` names a file, else a schedule shipped in ``pattern_tracker.defaults.chaos`` (``mixed``):
    a wheel user has no source tree to point at. Neither: the file, whose reading error says why."""
    import os

    from pattern_tracker.settings.locations import shipped_chaos_schedule

    return arg if os.path.exists(arg) else shipped_chaos_schedule(arg) or arg


def cmd_config_show(args: argparse.Namespace) -> int:
    from pattern_tracker.settings.config import load_config, render_effective

    loaded = load_config(getattr(args, "config", None))
    print(render_effective(loaded, args.format))
    return EXIT_OK


def cmd_config_validate(args: argparse.Namespace) -> int:
    from pattern_tracker.settings.config import validate_file

    validate_file(args.file)
    print(f"{args.file}: ok")
    return EXIT_OK
