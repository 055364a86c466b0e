"""What every command group of the CLI shares: exit codes, the one-line error, loading the
configuration, stop signals, plain-text formatting, the operator groups' SEQ arguments and the
drain both ``drain`` and ``dlq replay`` run. Command modules import this, never each other."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import msgspec

from pattern_tracker.core.bounds import bounded_number

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_INTERRUPTED = 130
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `seq 1000000 | head -1`
# Events remain in the spool after a drain: the service is unavailable (circuit open), or the
# drain was interrupted. Nothing is lost; the next drain or run delivers them.
EXIT_PENDING = 4
REASON_WIDTH = 80  # a table's last column (a free-text reason) is cut to this


class CliError(Exception):
    """A failure reported as one line with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def load(args: argparse.Namespace) -> Any:
    from pattern_tracker.settings.config import load_config
    from pattern_tracker.logs import add_secret, setup_logging

    loaded = load_config(getattr(args, "config", None))
    cfg = loaded.config
    from pattern_tracker.settings.store_url import store_password

    for secret in (cfg.api.token, cfg.serve.token, cfg.monitoring.alerting.webhook_url, store_password(cfg.serve.store)):
        add_secret(secret)  # masked in every log line, wherever the value came from
    setup_logging(cfg.logging.level, cfg.logging.format, cfg.logging.file, debug=getattr(args, "debug", False))
    return loaded


# What each spill reason means to whoever reads a drain's last line (docs/operations.md#retry).
_KEPT_BECAUSE = {
    "parent_missing": "the service does not know their parent yet",
    "not_retryable": "the service refused them for now (e.g. 401/403, no track endpoint)",
    "retries_exhausted": "every retry failed",
    "circuit_open": "the circuit opened",
}


def kept_because(spilled_by_reason: dict[str, int]) -> str:
    """`` (N: why; M: why)`` for the spill reasons a run met, the most frequent first; the log
    lines name each event's error."""
    parts = [f"{n}: {_KEPT_BECAUSE[reason]}" for reason, n in
             sorted(spilled_by_reason.items(), key=lambda item: -item[1]) if reason in _KEPT_BECAUSE]
    return f" ({'; '.join(parts)}; the log lines say more)" if parts else ""


def summary_fields(summary: Any, seconds: float | None = None) -> dict[str, Any]:
    """What every command's ``--json`` summary says of a run (``run``/``watch``, ``replay`` and
    ``drain`` add their own keys): one list, so the three say it with the same keys."""
    return {
        "read": summary.read, "unchanged": summary.unchanged, "delivered": summary.delivered,
        "already_existed": summary.already_existed, "dead_lettered": summary.dead_lettered,
        "left_in_spool": summary.left_in_spool, "dropped": summary.dropped,
        "delivered_anyway": summary.delivered_anyway, "not_kept": summary.not_kept,
        "spilled_by_reason": summary.spilled_by_reason,
        "seconds": round(summary.seconds if seconds is None else seconds, 3),
    }


def dropped_note(summary: Any, policy: str) -> str:
    """``, dropped N (…)`` for a run's summary line when the spool's overflow policy dropped
    events while it ran, else nothing: a run that lost events says so on the line people read."""
    if not summary.dropped:
        return ""
    anyway = f"; delivered anyway: {summary.delivered_anyway} (in flight when their entry went)" \
        if summary.delivered_anyway else ""
    return f", dropped {summary.dropped} (the spool was full: overflow_policy {policy}{anyway})"


def install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr naming the command it is about, and exit code 2
    (argparse's own prints the usage block first, 2-5 lines before the error).

    Subparsers are of their parent's class (argparse's default ``parser_class``), so the
    ``pattern-tracker`` parser being one makes every command's parser one. ``hint``: where a user
    who typed this command may have meant another one; it goes on the error line.
    """

    hint: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(**{_ERRORS_BY: self})  # the innermost command parsed names the error

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """A ``nargs="*"`` positional may be left out: given no default, argparse counts it as
        required and names it in 'the following arguments are required: DIR, SEQ' beside the one
        really missing."""
        if kwargs.get("nargs") == "*" and args and not args[0].startswith("-"):
            kwargs.setdefault("default", [])
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        see = f"{self.hint}; see --help" if self.hint else "see --help"
        print(f"{self.prog}: error: {message} ({see})", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)

    _inside = False  # parse_known_intermixed_args calls parse_known_args (3.11): argparse's own, then

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """A command's positionals may come before, between and after its options (``run DIR1
        --source watch DIR2``, ``archive record OUT --source watch PATH…``): argparse's own gives a
        ``nargs="*"`` positional its empty match before the first option, and a PATH after an
        option is then unrecognized. A parser with subcommands cannot intermix; every command's
        own parser (run through this as a subparser) does."""
        if self._inside or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """Arguments no command knows are reported by the command they were given to, not by
        ``pattern-tracker`` (which argparse's own parse_args does)."""
        parsed, extras = self.parse_known_args(args, namespace)
        by = vars(parsed).pop(_ERRORS_BY, self)
        if extras:
            by.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


_ERRORS_BY = "_usage_errors_by"

N = TypeVar("N", int, float)


def bounded(kind: Callable[[str], N], low: float, high: float = math.inf, *, above: bool = False) -> Callable[[str], N]:
    """An argparse ``type=`` for a numeric flag, checked at parse time by ``core.bounds.bounded_number``
    (the rule the Python API uses), so a bad value is the usage error line naming the flag and the
    value (exit 2), never a hang or an internal error later (``--speedup nan`` paced nothing,
    ``--rate inf`` overflowed)."""

    def parse(text: str) -> N:
        value = kind(text)  # a ValueError: argparse's own "invalid float value: 'x'"
        try:
            return bounded_number(value, low, high, above=above, integer=kind is int)  # type: ignore[return-value]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(kind, "__name__", "number")  # argparse names the type with it
    return parse


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(value: Any) -> str:
    """One printable line: control characters (newlines, escapes) become spaces."""
    if value is None:
        return "-"
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(" ", text)


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def print_json(obj: Any) -> None:
    print(json.dumps(msgspec.to_builtins(obj), indent=2, ensure_ascii=False))


def open_store_for(args: argparse.Namespace) -> tuple[Any, Any]:
    from pattern_tracker.composition import open_store

    cfg = load(args).config
    return cfg, open_store(cfg)


# ---------------------------------------------------------------------------------------
# Operator command groups (dlq, circuit, cache, drain): parsers, SEQ arguments, tables


def action_group(parent: Any, common: argparse.ArgumentParser, name: str, help: str, dest: str,
                 aliases: Sequence[str] = (), related: str | None = None) -> Any:
    """``pattern-tracker NAME ACTION …``: a command whose ACTION is required. ``related``: the
    command next door a user may be looking for, shown under --help and with a usage error."""
    p = parent.add_parser(name, aliases=list(aliases), parents=[common], help=help, description=help,
                          epilog=related and related[0].upper() + related[1:] + ".")
    p.hint = related
    g = p.add_subparsers(dest=dest, metavar="ACTION")
    g.required = True
    return g


def add_action(group: Any, common: argparse.ArgumentParser, name: str, help: str, func: Callable[[argparse.Namespace], int],
           json_flag: bool = True) -> argparse.ArgumentParser:
    """One ACTION of an ``action_group``, with ``--json`` unless ``json_flag`` is false."""
    p = group.add_parser(name, parents=[common], help=help, description=help)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=func)
    return p


def parse_seq(value: str, listing: str = "dlq list") -> int:
    """A SEQ argument as a positive number; ``listing`` is the command that shows them."""
    try:
        seq = int(value, 10)
    except ValueError:
        seq = 0
    if seq < 1:
        raise CliError(f"SEQ must be a positive integer (see `pattern-tracker {listing}`), got {value!r}", EXIT_USAGE)
    return seq


def parse_seqs(values: Sequence[str], listing: str = "dlq list") -> list[int]:
    """The SEQ arguments as numbers, in order, each once."""
    return list(dict.fromkeys(parse_seq(v, listing) for v in values))


def missing_seqs(seqs: Sequence[int], what: str = "dead letter", listing: str = "dlq list",
                 code: int = EXIT_FAILURE) -> CliError:
    """The error for SEQ numbers that name nothing (nothing was changed)."""
    listed = ", ".join(str(s) for s in seqs)
    return CliError(f"no {what} with seq {listed} (nothing changed; see `pattern-tracker {listing}`)", code)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell; the last one (a reason) is not padded."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


# ---------------------------------------------------------------------------------------
# Drain (``drain`` and ``dlq replay``): usecases.drain, worded for a terminal


def busy_line(lease: Any) -> str:
    where = "" if lease.host == socket.gethostname() else f" on {lease.host}"
    return f"another process (pid {lease.pid}{where}) is draining this data directory"


async def _follow_with_bar(total: int, done: Callable[[], int], ended: asyncio.Event) -> None:
    """The drain's progress bar (pipeline/cli/progress.py) until ``ended``."""
    from pattern_tracker.cli.progress import Progress

    bar = Progress(total, "drain")
    try:
        await bar.follow(done, ended, interval=0.2)
    finally:
        bar.update(done())
        bar.finish()


def drain_now(cfg: Any, store: Any, until_empty: bool, quiet: bool = False) -> tuple[int, dict[str, Any]]:
    """Deliver the spool now; print the outcome (unless ``quiet``); return (exit code, result).

    With a terminal on stderr and not ``quiet``, a progress bar: total = the spool's size at
    start, done = delivered + already there + dead-lettered. Ctrl-C / SIGTERM stop it.
    """
    from pattern_tracker.usecases.drain import drain_spool

    async def run() -> Any:
        stop = asyncio.Event()
        install_stop(stop)
        watch = _follow_with_bar if not quiet and sys.stderr.isatty() else None
        return await drain_spool(cfg, store, until_empty=until_empty, stop=stop, watch=watch)

    outcome = asyncio.run(run())
    if outcome.summary is None:  # another process holds the drain lease: it delivers them
        if not quiet:
            print(busy_line(outcome.holder))
        return EXIT_OK, {"status": "busy", "holder_pid": outcome.holder.pid, "holder_host": outcome.holder.host}
    summary, circuit = outcome.summary, outcome.circuit
    result: dict[str, Any] = {
        "status": "empty" if summary.left_in_spool == 0 else "pending",
        **summary_fields(summary),
        "replayed": summary.replayed,
        "retried": summary.retried,
        "expired": summary.expired,
        "circuit": circuit["state"],
        "retry_at": circuit["retry_at"],
    }
    lines: list[str] = []
    code = EXIT_OK
    if summary.not_kept:
        # A dead letter write that was an event's only record failed: never silent.
        lines.append(f"{summary.not_kept} event(s) were neither delivered nor kept ({summary.not_kept_because}); "
                     "free space or raise storage.max_map_size_mb")
    if outcome.status == "busy":
        result.update(status="busy", holder_pid=outcome.holder.pid, holder_host=outcome.holder.host)
        lines.append(busy_line(outcome.holder))
    elif outcome.status == "pending":
        code = EXIT_PENDING
        result["reason"] = outcome.reason
        if outcome.reason == "interrupted":
            lines.append(f"interrupted: {summary.left_in_spool} event(s) left in the spool")
        elif outcome.reason == "circuit_open":
            lines.append(f"the service is unavailable: circuit {circuit['state']}, next trial {circuit['next_trial']}; "
                         f"{summary.left_in_spool} event(s) left in the spool")
        else:
            lines.append(f"{summary.left_in_spool} event(s) could not be delivered now and stay in the spool"
                         f"{kept_because(summary.spilled_by_reason)}")
    lines.append(
        f"drain: delivered {summary.delivered}, already there {summary.already_existed}, "
        f"dead-lettered {summary.dead_lettered}, left in spool {summary.left_in_spool}"
        f"{dropped_note(summary, cfg.pattern_tracking.overflow_policy)} ({summary.seconds:.1f}s)"
    )
    if not quiet:
        for line in lines:
            print(line)
    if summary.not_kept:
        code = EXIT_FAILURE
    return code, result
