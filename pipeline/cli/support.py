"""What every command group of the CLI shares: exit codes, the one-line error, loading the
configuration, stop signals and plain-text formatting. Command modules import this, never each other."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from typing import Any, NoReturn

import msgspec

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_INTERRUPTED = 130
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `seq 1000000 | head -1`
# Events remain in the spool after a drain: the service is unavailable (circuit open), or the
# drain was interrupted. Nothing is lost; the next drain or run delivers them.
EXIT_PENDING = 4


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
    for secret in (cfg.api.token, cfg.serve.token, cfg.monitoring.alerting.webhook_url):
        add_secret(secret)  # masked in every log line, wherever the value came from
    setup_logging(cfg.logging.level, cfg.logging.format, cfg.logging.file, debug=getattr(args, "debug", False))
    return loaded


def install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Usage errors of these commands are one line on stderr and exit code 2 (no usage dump)."""

    def error(message: str) -> NoReturn:
        print(f"{parser.prog}: error: {message} (see --help)", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)

    parser.error = error  # type: ignore[method-assign]
    return parser


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
