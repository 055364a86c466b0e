"""The ``pattern-tracker`` parser and dispatcher: every command but ``hook`` (see pattern_tracker.main).

Exit codes: 0 success; 1 runtime failure (store, service, internal error); 2 usage or
configuration error; 3 some input records were rejected (each reported on stderr); 4 events left
in the spool; 141 stdout's reader went away (``… | head``: quiet, like a tool ended by SIGPIPE);
130 interrupted. No traceback reaches a user unless ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence

from pattern_tracker import __version__
from pattern_tracker.cli import (
    archive,
    cache,
    circuit,
    commands,
    dashboard,
    dlq,
    drain,
    install_hook,
    lineage,
    monitor,
    query,
    status,
)
from pattern_tracker.cli.support import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_STDOUT_CLOSED,
    EXIT_USAGE,
    CliError,
    OneLineParser,
    stderr_line,
)


# ---------------------------------------------------------------------------------------
# Parser


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="YAML file overriding the defaults and ~/.config/pattern-tracker/config.yaml")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="debug logging and tracebacks")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = OneLineParser(
        prog="pattern-tracker",
        description="Track code patterns written by an AI coding assistant and deliver them to the Phase 4 lineage service.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 failure, 2 usage/config error, 3 input rejected, 4 events left in the spool (drain), 130 interrupted, 141 stdout closed by its reader.",
    )
    parser.add_argument("--version", action="version", version=f"pattern-tracker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for group in (commands, query, dlq, circuit, cache, drain, install_hook, archive, monitor, status, lineage, dashboard):
        group.register(sub, common)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Every command but ``hook`` (see pipeline/main.py)."""
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
    from pattern_tracker.settings.config import ConfigError
    from pattern_tracker.core.store import StoreError

    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader gone is met here, not in the interpreter's final flush
        return code
    except ConfigError as exc:
        stderr_line(str(exc))
        return EXIT_USAGE
    except CliError as exc:
        stderr_line(f"pattern-tracker: {exc}")
        return exc.code
    except StoreError as exc:
        stderr_line(f"pattern-tracker: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
            raise  # `… | head`: run() ends quietly, for every command at once
        known = _known_error(exc)
        if known is not None:
            stderr_line(f"pattern-tracker: {known[0]}")
            return known[1]
        if debug:
            raise
        stderr_line(f"pattern-tracker: internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
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
