"""`pattern-tracker archive generate|info|record` and `pattern-tracker replay`."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from pattern_tracker.cli.support import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_USAGE,
    CliError,
    bounded,
    dropped_note,
    install_stop,
    load,
    stderr_line,
    summary_fields,
)
from pattern_tracker.core.bounds import MAX_REPLAY_RATE


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("archive", parents=[common], help="LMDB archives of pattern events: generate, info, record")
    asub = p.add_subparsers(dest="archive_command", metavar="ACTION")
    asub.required = True
    g = asub.add_parser("generate", parents=[common], help="write a deterministic archive of realistic events")
    g.add_argument("--events", type=bounded(int, 1), required=True, help="number of events")
    g.add_argument("--files", type=bounded(int, 1), default=100,
                   help="number of files (edit chains), default 100; at most --events (more is clamped to it)")
    g.add_argument("--seed", type=int, default=1, help="random seed (same arguments, same archive)")
    g.add_argument("out", metavar="OUT", help="directory of the new archive (must not hold one)")
    g.set_defaults(func=cmd_generate)
    i = asub.add_parser("info", parents=[common], help="what an archive holds")
    i.add_argument("archive", metavar="ARCHIVE")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    r = asub.add_parser("record", parents=[common], help="run the sources from config and record every event into OUT")
    r.add_argument("out", metavar="OUT", help="directory of the archive (appended to when it holds one)")
    r.add_argument("--source", action="append", choices=["watch", "stdin"], help="override sources.enabled")
    r.add_argument("paths", nargs="*", metavar="PATH",
                   help="trees to watch (default: sources.watch.paths)")
    r.set_defaults(func=cmd_record)

    p = sub.add_parser("replay", parents=[common], help="replay an archive through the full pipeline")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--rate", type=bounded(float, 0, MAX_REPLAY_RATE, above=True), default=None, metavar="EVENTS_PER_S",
                   help=f"at most this many events per second (0 < EVENTS_PER_S <= {MAX_REPLAY_RATE:g})")
    p.add_argument("--speedup", type=bounded(float, 0, above=True), default=None, metavar="X",
                   help="the archive's own timing, X times faster (X > 0)")
    p.add_argument("--sink", choices=["config", "null"], default="config",
                   help="config: api.url or the embedded store (default); null: acknowledge everything (a ceiling)")
    p.add_argument("--skip", type=bounded(int, 0), default=0, metavar="N",
                   help="start after the archive's first N events: resume a replay that stopped (its last line names N)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_replay)


def _open_archive(path: str) -> Any:
    from pattern_tracker.model.archive import Archive, ArchiveError

    try:
        return Archive(path)
    except ArchiveError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _check_out(out: str) -> None:
    """OUT names a directory (a new one is created): anything else there is a usage error, not the
    store's "cannot create data directory" (exit 1)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise CliError(f"OUT {out} exists and is not a directory; an archive is a directory: choose another path",
                       EXIT_USAGE)


def cmd_generate(args: argparse.Namespace) -> int:
    from pattern_tracker.model.archive import Archive
    from pattern_tracker.usecases.archive_gen import generate

    _check_out(args.out)
    if os.path.exists(os.path.join(args.out, "data.mdb")):
        raise CliError(f"{args.out} already holds an archive; choose another directory", EXIT_USAGE)
    files = min(args.files, args.events)  # every file gets an event: a file has at least its first version
    archive = Archive(args.out, create=True)
    started = time.monotonic()
    try:
        batch = []
        for ev in generate(args.events, files, args.seed):
            batch.append(ev)
            if len(batch) == 2000:
                archive.append(batch)
                batch = []
        if batch:
            archive.append(batch)
        archive.set_meta({"generator": "pattern-tracker archive generate", "events": args.events, "files": files,
                          "seed": args.seed, "generated_at": time.time()})
        n = archive.count()
    finally:
        archive.close()
    clamped = f" (--files {args.files} clamped to --events)" if files < args.files else ""
    print(f"wrote {n} events over {files} files{clamped} to {args.out} ({time.monotonic() - started:.1f}s)")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    import json

    archive = _open_archive(args.archive)
    try:
        info = archive.info()
    finally:
        archive.close()
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"archive {info['path']}")
    for key in ("events", "files", "bytes_of_code", "code_size_min", "code_size_median", "code_size_max"):
        print(f"  {key + ':':18} {info[key]}")
    print(f"  {'languages:':18} {', '.join(f'{k} {v}' for k, v in info['languages'].items())}")  # type: ignore[union-attr]
    if info["meta"]:
        print(f"  {'meta:':18} {info['meta']}")
    return EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    from pattern_tracker.cli.running import run_sources
    from pattern_tracker.sinks.archive import ArchiveSink

    _check_out(args.out)
    loaded = load(args)
    cfg = loaded.config
    kinds = args.source or list(cfg.sources.enabled)
    paths = args.paths or list(cfg.sources.watch.paths)
    return asyncio.run(run_sources(cfg, kinds, paths, sink=ArchiveSink(args.out), target=f"archive {args.out}"))


def cmd_replay(args: argparse.Namespace) -> int:
    loaded = load(args)
    archive = _open_archive(args.archive)
    try:
        return asyncio.run(_replay(loaded.config, archive, args))
    finally:
        archive.close()


async def _replay(cfg: Any, archive: Any, args: argparse.Namespace) -> int:
    import json

    from pattern_tracker.composition import build_pipeline, open_store
    from pattern_tracker.sinks.null import NullSink
    from pattern_tracker.sources.replay import replay_source

    total = archive.count()
    if not 0 <= args.skip <= total:
        raise CliError(f"--skip must be between 0 and the archive's {total} events, got {args.skip}", EXIT_USAGE)
    store = open_store(cfg)
    pipeline = build_pipeline(cfg, store, sink=NullSink() if args.sink == "null" else None)
    stop = asyncio.Event()
    install_stop(stop)
    progress = _progress(total - args.skip)
    source = replay_source(archive, rate=args.rate, speedup=args.speedup, chunk=cfg.pattern_tracking.batch_size,
                           on_progress=progress, skip=args.skip)
    started = time.monotonic()
    summary = await pipeline.run([source], stop)
    elapsed = time.monotonic() - started
    progress(None)
    done = summary.delivered + summary.already_existed
    reached = args.skip + summary.read  # the archive's events before this one were read, by this run or earlier
    result = {"archive_events": total, "skipped": args.skip, "unread": total - reached, **summary_fields(summary, elapsed),
              "events_per_second": round(done / elapsed, 1) if elapsed > 0 else None}
    if args.json:
        print(json.dumps(result))
    else:
        skipped = f" (skipped the first {args.skip})" if args.skip else ""
        print(f"replay: read {summary.read} of {total}{skipped}, delivered {summary.delivered}, already there "
              f"{summary.already_existed}, dead-lettered {summary.dead_lettered}, left in spool "
              f"{summary.left_in_spool}{dropped_note(summary, cfg.pattern_tracking.overflow_policy)} "
              f"({elapsed:.1f}s, {result['events_per_second']} events/s)")
    if summary.gave_up_on_full_spool:
        # The spool full and the service unavailable: reading stopped (an archive's events never
        # make the spool drop one, whatever overflow_policy says). What was read is delivered or
        # in the spool (but what not_kept counts); the rest of the archive is unread. Like drain: exit 4.
        stderr_line(_gave_up_line(cfg, store, summary, total, reached))
        return EXIT_PENDING
    if summary.not_kept:
        # A store write that was their only record failed (the store full): reading stopped.
        stderr_line(f"pattern-tracker: replay: {summary.not_kept} event(s) were neither delivered nor kept "
                    f"({summary.not_kept_because}); they are still in the archive: free space or raise "
                    "storage.max_map_size_mb, then replay again (events already delivered are recognised)")
        return EXIT_FAILURE
    if stop.is_set() and reached < total:
        # Ctrl-C/SIGTERM before the archive's end: not a failure, but not done either.
        return EXIT_INTERRUPTED
    if summary.left_in_spool:
        # Same contract as `drain`: nothing is lost, but the caller must know delivery is pending.

        if not args.json:
            print(f"{summary.left_in_spool} event(s) could not be delivered now and stay in the spool; "
                  "`pattern-tracker drain` delivers them")
        return EXIT_PENDING
    return EXIT_OK


def _again(skip: int) -> str:
    """This very command line (its options kept), starting after the archive's first ``skip`` events."""
    import shlex
    import sys

    argv, kept = sys.argv[1:], []
    while argv:
        arg = argv.pop(0)
        if arg == "--skip":
            argv = argv[1:]
        elif not arg.startswith("--skip="):
            kept.append(arg)
    return shlex.join(["pattern-tracker", *kept, *(["--skip", str(skip)] if skip else [])])


def _gave_up_line(cfg: Any, store: Any, summary: Any, total: int, reached: int) -> str:
    """Why a replay stopped reading with the archive not done, and the command that goes on."""
    from pattern_tracker.composition import breaker_for
    from pattern_tracker.usecases.status import circuit_view

    circuit = circuit_view(breaker_for(cfg, store), time.time())
    line = (f"pattern-tracker: replay stopped after {reached} of {total} events ({total - reached} left unread): "
            f"the spool is full ({summary.left_in_spool} of cache_size {cfg.pattern_tracking.cache_size}) and the "
            f"service is unavailable (circuit {circuit['state']}, next trial {circuit['next_trial']}); "
            "a replay never makes the spool drop an event, whatever overflow_policy says")
    if summary.not_kept:
        # Another process filled the spool while events it had read were in flight: they found no room.
        line += (f"; {summary.not_kept} of the events read found no room in the spool when they could not be "
                 "delivered and are not kept (the archive has them): once the service is back, replay it again "
                 f"from the start: `{_again(0)}` (events already delivered are recognised)")
        return line
    return (line + "; nothing is lost: what was read is delivered or in the spool. Once the service is back, "
            f"`{_again(reached)}` goes on (it delivers the spool first)")


def _progress(total: int) -> Any:
    """A progress callback: a bar with rate and ETA on a terminal (redrawn ~5 times a second)."""
    from pattern_tracker.cli.progress import Progress

    bar = Progress(total, label="replay")
    last = 0.0

    def update(done: int | None) -> None:
        nonlocal last
        if done is None:
            bar.finish()
            return
        now = time.monotonic()
        if now - last >= 0.2 or done >= total:
            last = now
            bar.update(done)

    return update
