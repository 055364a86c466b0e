"""The ``pattern-tracker`` commands (all but ``hook``, which pipeline/cli.py dispatches first).

Exit codes: 0 success; 1 runtime failure (store, service, internal error); 2 usage or
configuration error; 3 some input records were rejected (each reported on stderr);
141 stdout's reader went away (``… | head``: quiet, like a tool ended by SIGPIPE); 130 interrupted (before a clean start, ``replay`` before the archive's end, ``run`` while waiting
for room in a full spool). No traceback reaches a user unless ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pattern_tracker import __version__

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_INTERRUPTED = 130
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `seq 1000000 | head -1`

log = logging.getLogger("pattern_tracker.cli")


class CliError(Exception):
    """A failure reported as one line with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------
# Parser


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML file overriding config/default.yaml")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="debug logging and tracebacks")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="pattern-tracker",
        description="Track code patterns written by an AI coding assistant and deliver them to the Phase 4 lineage service.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 failure, 2 usage/config error, 3 input rejected, 4 events left in the spool (drain), 130 interrupted, 141 stdout closed by its reader.",
    )
    parser.add_argument("--version", action="version", version=f"pattern-tracker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", parents=[common], help="run the pipeline with the sources from config (default: watch .)")
    p.add_argument("--source", action="append", choices=["watch", "stdin"], help="override sources.enabled (repeatable)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="trees to watch (default: sources.watch.paths)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("watch", parents=[common], help="watch DIR… and deliver every change")
    p.add_argument("paths", nargs="+", metavar="DIR")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("serve", parents=[common], help="serve the Phase 4 API over the embedded lineage store")
    p.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: serve.port, 8053; 0 = any free port)")
    p.add_argument("--chaos", metavar="FILE", default=None,
                   help="inject faults on the schedule in FILE (README \"Chaos schedules\"; examples in config/chaos/)")
    p.add_argument("--seed", metavar="N", type=int, default=None,
                   help="seed of the chaos decisions (overrides the schedule's seed; same seed, same decisions)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("query", parents=[common], help="print the lineage chain of a pattern or a file")
    p.add_argument("pattern_id", nargs="?", help="pattern id (any version of the chain)")
    p.add_argument("--file", metavar="PATH", help="the chain of this file instead")
    p.add_argument("--descendants", action="store_true", help="descendants instead of ancestry")
    p.add_argument("--limit", type=int, default=100, help="at most this many versions (--file)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("config", parents=[common], help="show or validate configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    c = csub.add_parser("show", parents=[common], help="the effective config with the origin of every value")
    c.add_argument("--format", choices=["text", "yaml", "json"], default="text")
    c.set_defaults(func=cmd_config_show)
    c = csub.add_parser("validate", parents=[common], help="check a config file (defaults + FILE, no env)")
    c.add_argument("file", metavar="FILE")
    c.set_defaults(func=cmd_config_validate)
    from pattern_tracker import hook_cli, ops_cli  # they import this module: registered here, not at the top

    p = sub.add_parser(
        "hook",
        parents=[common],
        help="the Claude Code PostToolUse hook: read the payload on stdin, spool the change, exit 0",
        description="Run by Claude Code after Write/Edit/MultiEdit/NotebookEdit with the PostToolUse JSON on "
        "stdin. Always exits 0; problems go to its log file (hook.log_file). Install it with install-hook.",
    )
    p.add_argument("--verbose", action="store_true", help="print what was recorded on stdout")
    ops_cli.register(sub, common)  # dlq, circuit, cache, drain
    hook_cli.register(sub, common)  # install-hook, uninstall-hook
    __import__("pattern_tracker.archive_cli", fromlist=["register"]).register(sub, common)  # archive, replay
    __import__("pattern_tracker.monitor_cli").monitor_cli.register(sub, common)  # health, metrics
    __import__("pattern_tracker.status_cli", fromlist=["register"]).register(sub, common)  # status [--watch] [--json]
    return parser


# ---------------------------------------------------------------------------------------
# Helpers


def _load(args: argparse.Namespace) -> Any:
    from pattern_tracker.config import load_config
    from pattern_tracker.logs import add_secret, setup_logging

    loaded = load_config(getattr(args, "config", None))
    cfg = loaded.config
    for secret in (cfg.api.token, cfg.serve.token, cfg.monitoring.alerting.webhook_url):
        add_secret(secret)  # masked in every log line, wherever the value came from
    setup_logging(cfg.logging.level, cfg.logging.format, cfg.logging.file, debug=getattr(args, "debug", False))
    return loaded


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class StatusLine:
    """A one-line live status on a terminal, refreshed every second (nothing when not a tty).

    While it runs, log records bound for stderr first clear the line: a log line would
    otherwise be glued to the end of the status text (the status has no newline).
    """

    def __init__(self, render: Callable[[], str], enabled: bool) -> None:
        self.render = render
        self.enabled = enabled
        self._width = 0
        self._lock = threading.Lock()  # log records come from the store thread too

    async def loop(self, stop: asyncio.Event) -> None:
        if not self.enabled:
            return
        from pattern_tracker.progress import clear_before_logs

        undo = clear_before_logs(self.clear, sys.stderr)
        try:
            while not stop.is_set():
                self.show()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            undo()
            self.clear()

    def show(self) -> None:
        text = self.render()
        with self._lock:
            pad = max(0, self._width - len(text))
            sys.stderr.write("\r" + text + " " * pad)
            sys.stderr.flush()
            self._width = len(text)

    def clear(self) -> None:
        with self._lock:
            if self._width:
                sys.stderr.write("\r" + " " * self._width + "\r")
                sys.stderr.flush()
                self._width = 0


# ---------------------------------------------------------------------------------------
# Commands


def cmd_run(args: argparse.Namespace) -> int:
    loaded = _load(args)
    cfg = loaded.config
    if not cfg.pattern_tracking.enabled:
        _stderr(f"pattern tracking is disabled (pattern_tracking.enabled = false, from {loaded.origins.get('pattern_tracking.enabled')})")
        return EXIT_OK
    kinds = args.source or list(cfg.sources.enabled)
    paths = args.paths or list(cfg.sources.watch.paths)
    return asyncio.run(_run(cfg, kinds, paths))


def cmd_watch(args: argparse.Namespace) -> int:
    loaded = _load(args)
    return asyncio.run(_run(loaded.config, ["watch"], args.paths))


async def _run(cfg: Any, kinds: Sequence[str], paths: Sequence[str], sink: Any = None) -> int:
    from pattern_tracker.assembly import build_pipeline, open_store, stdin_source, watch_source

    store = open_store(cfg)
    pipeline = build_pipeline(cfg, store, sink=sink)
    stop = asyncio.Event()
    _install_stop(stop)
    sources = []
    stdin_stats = None
    status = StatusLine(lambda: "", enabled=sys.stderr.isatty())
    if "watch" in kinds:
        src, _ = watch_source(cfg, paths)
        sources.append(src)
    if "stdin" in kinds:
        src, stdin_stats = stdin_source(cfg, lambda line: (status.clear(), _stderr(line)))
        sources.append(src)
    where = f"{cfg.api.url}" if cfg.api.url else f"embedded store {cfg.storage.data_dir_path}"
    started = time.monotonic()

    def render() -> str:
        s = pipeline.summary
        rate = (s.delivered + s.already_existed) / max(1e-9, time.monotonic() - started)
        # Pending: what the spool still holds, i.e. read (by this run, the hook, an earlier run)
        # and not yet acknowledged — the number a user waits to see reach 0. A cheap LMDB read.
        return (
            f"pattern-tracker → {where} | read {s.read} | delivered {s.delivered} | dup {s.already_existed} "
            f"| pending {pipeline.spool.size()} | dead {s.dead_lettered} | {rate:.1f} ev/s"
        )

    status.render = render
    if "watch" in kinds:
        _stderr(f"watching {', '.join(paths)} → {where} (Ctrl-C to stop)")
    status_task = asyncio.create_task(status.loop(stop))
    monitors = await _start_monitoring(cfg, store, stop, lambda line: (status.clear(), _stderr(line)))
    try:
        summary = await pipeline.run(sources, stop)
    finally:
        stop.set()
        await status_task
        await _stop_monitoring(monitors)
    _stderr(
        f"done: read {summary.read}, unchanged {summary.unchanged}, delivered {summary.delivered}, "
        f"already there {summary.already_existed}, dead-lettered {summary.dead_lettered}, "
        f"left in spool {summary.left_in_spool} ({summary.seconds:.1f}s)"
    )
    if summary.stopped_waiting_for_room:
        # overflow_policy block, the spool full: what was read is in the spool; the input not taken
        # is left where it was (stdin: unread; watch: the next start's scan finds the files).
        _stderr(f"stopped while waiting for room in the full spool ({summary.left_in_spool} events, "
                "overflow_policy block): input not taken was left unread")
        return EXIT_INTERRUPTED
    if stdin_stats is not None and stdin_stats.rejected:
        _stderr(f"{stdin_stats.rejected} input record(s) rejected (see the lines above)")
        return EXIT_REJECTED
    return EXIT_OK


async def _start_monitoring(cfg: Any, store: Any, stop: asyncio.Event, console: Callable[[str], None]) -> list[Any]:
    """The status server and the alerter of ``monitoring`` (README "Monitoring"). They never make
    ``run`` fail: a part that cannot start is logged and skipped."""
    mon = cfg.monitoring
    started: list[Any] = []
    if not mon.enabled:
        return started
    if mon.status_port:
        try:
            from pattern_tracker.status_server import StatusServer

            server = StatusServer(cfg, store, mon.status_port)
            url = await server.start()
            log.info("status endpoint on %s (/health, /metrics.json)", url)
            started.append(server)
        except Exception as exc:  # noqa: BLE001
            log.warning("status endpoint on port %s not started: %s: %s", mon.status_port, type(exc).__name__, exc)
    try:
        from pattern_tracker.alerting import Alerter

        started.append(asyncio.create_task(Alerter(cfg, store, console=console).run(stop)))
    except Exception as exc:  # noqa: BLE001
        log.warning("alerting not started: %s: %s", type(exc).__name__, exc)
    return started


async def _stop_monitoring(started: list[Any]) -> None:
    for part in started:
        try:
            if isinstance(part, asyncio.Task):
                await asyncio.wait_for(part, timeout=10)
            else:
                await part.stop()
        except Exception as exc:  # noqa: BLE001
            log.warning("stopping monitoring: %s: %s", type(exc).__name__, exc)


def cmd_serve(args: argparse.Namespace) -> int:
    loaded = _load(args)
    cfg = loaded.config
    from pattern_tracker.assembly import open_store
    from pattern_tracker.serve import ListenError, run_server
    from pattern_tracker.sinks.lineage_store import LineageStore

    host = args.host or cfg.serve.host
    port = cfg.serve.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise CliError(f"--port {port} is out of range 0..65535", EXIT_USAGE)
    chaos = None
    if args.chaos is not None:
        from pattern_tracker.chaos import Chaos, load_schedule

        chaos = Chaos(load_schedule(args.chaos), seed=args.seed, source=args.chaos)  # ChaosScheduleError: exit 2
    elif args.seed is not None:
        raise CliError("--seed needs --chaos FILE", EXIT_USAGE)
    store = open_store(cfg)
    try:
        asyncio.run(
            run_server(
                host,
                port,
                lineage=LineageStore(store),
                token=cfg.serve.token,
                max_request_bytes=cfg.serve.max_request_bytes,
                rate_limit_per_minute=cfg.serve.rate_limit_per_minute,
                chaos=chaos,
            )
        )
    except ListenError as exc:  # a busy port is the user's to change: usage error (2), one line
        hint = "choose another with --port N (--port 0 picks a free one)" if exc.port_problem else "check --host"
        raise CliError(f"{exc}; {hint}", EXIT_USAGE) from None
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    loaded = _load(args)
    cfg = loaded.config
    if bool(args.pattern_id) == bool(args.file):
        raise CliError("query needs exactly one of PATTERN_ID or --file PATH", EXIT_USAGE)
    from pattern_tracker.lineage_view import query_lineage

    return asyncio.run(query_lineage(cfg, args.pattern_id, args.file, args.descendants, args.limit, args.json))


def cmd_config_show(args: argparse.Namespace) -> int:
    from pattern_tracker.config import load_config, render_effective

    loaded = load_config(getattr(args, "config", None))
    print(render_effective(loaded, args.format))
    return EXIT_OK


def cmd_config_validate(args: argparse.Namespace) -> int:
    from pattern_tracker.config import validate_file

    validate_file(args.file)
    print(f"{args.file}: ok")
    return EXIT_OK


# ---------------------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> int:
    """Every command but ``hook`` (see pipeline/cli.py)."""
    parser = build_parser()
    try:
        return _dispatch(parser, argv)
    except BrokenPipeError:  # stdout's (see _dispatch) or argparse's --help: the reader has all it wanted
        _silence_stdout()
        return EXIT_STDOUT_CLOSED


def _dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse and run one command; every failure becomes one line and an exit code."""
    args = parser.parse_args(argv)  # inside run()'s BrokenPipeError guard: `--help | head -1`
    debug = getattr(args, "debug", False)
    from pattern_tracker.config import ConfigError
    from pattern_tracker.store import StoreError

    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader gone is met here, not in the interpreter's final flush
        return code
    except ConfigError as exc:
        _stderr(str(exc))
        return EXIT_USAGE
    except CliError as exc:
        _stderr(f"pattern-tracker: {exc}")
        return exc.code
    except StoreError as exc:
        _stderr(f"pattern-tracker: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
            raise  # `… | head`: run() ends quietly, for every command at once
        known = _known_error(exc)
        if known is not None:
            _stderr(f"pattern-tracker: {known[0]}")
            return known[1]
        if debug:
            raise
        _stderr(f"pattern-tracker: internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
        return EXIT_FAILURE


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe or socket whose reader has closed it.

    A BrokenPipeError can also come from a socket (the lineage service, a webhook): that one is
    a failure to report, not a reader who has read enough, so the pipe itself is asked.
    """
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)  # POLLERR/POLLHUP are always reported
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no fileno (replaced stdout), closed, no poll()
        return False


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null (docs.python.org, signal, "Note on SIGPIPE"): the output still
    buffered is flushed there at exit, not into a closed pipe ("Exception ignored … BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def _known_error(exc: Exception) -> tuple[str, int] | None:
    """Errors of other modules that are a user's to fix, mapped to (message, exit code)."""
    name = type(exc).__name__
    if name == "WatchError":
        return str(exc), EXIT_USAGE
    if name == "SinkError":
        return str(exc), EXIT_FAILURE
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}", EXIT_FAILURE
    return None
