"""``pattern-tracker``: the one entry point.

``hook`` runs on every edit Claude Code makes, so it is dispatched before anything else is
imported (argparse, asyncio, msgspec, reactivex, aiohttp, OpenTelemetry: ``pattern_tracker.cli.app``
and below); it must finish in tens of milliseconds.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    hook_args = _hook_args(args)
    if hook_args is not None:
        from pattern_tracker.hook import main as hook_main

        return hook_main(hook_args)
    from pattern_tracker.cli.app import run

    return run(args)


def _hook_args(args: list[str]) -> list[str] | None:
    """The hook's arguments when the command is ``hook``, else None. The options every command
    takes may stand before it (``pattern-tracker --config F hook``, the order ``--help`` shows):
    they are the hook's too. ``--help`` goes to the parser, which describes the hook."""
    i = 0
    while i < len(args) and (args[i] in ("--config", "--debug") or args[i].startswith("--config=")):
        i += 2 if args[i] == "--config" else 1
    if args[i:i + 1] != ["hook"] or "--help" in args or "-h" in args:
        return None
    return args[:i] + args[i + 1:]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
