"""``pattern-tracker``: the one entry point.

``hook`` runs on every edit Claude Code makes, so it is dispatched before anything else is
imported (argparse, asyncio, msgspec, reactivex, aiohttp, OpenTelemetry: ``pattern_tracker.cli.app``
and below); it must finish in tens of milliseconds.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["hook"] and "--help" not in args and "-h" not in args:
        from pattern_tracker.hook import main as hook_main

        return hook_main(args[1:])
    from pattern_tracker.cli.app import run

    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
