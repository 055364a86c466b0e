"""``pattern-tracker drain [--until-empty]``: deliver the spool's backlog now, then exit.

The drain itself is usecases.drain (worded by cli.support.drain_now, shared with ``dlq replay``).
Exit codes: 0 the spool is empty (or another process is draining it), 4 events remain (service
unavailable, circuit open or drain interrupted: the next drain or run delivers them).
"""

from __future__ import annotations

import argparse
from typing import Any

from pattern_tracker.cli.support import drain_now, open_store_for, print_json


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``drain`` to the ``pattern-tracker`` subparsers."""
    p = sub.add_parser(
        "drain", parents=[common], help="deliver the spool's backlog now, then exit",
        description="Deliver the spool's backlog now, then exit. Exit 0: the spool is empty; "
                    "4: events remain (service unavailable, circuit open, or interrupted).",
    )
    p.add_argument("--until-empty", action="store_true",
                   help="keep going through open-circuit periods until the spool is empty (Ctrl-C stops)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_drain)


def cmd_drain(args: argparse.Namespace) -> int:
    cfg, store = open_store_for(args)
    code, result = drain_now(cfg, store, args.until_empty, quiet=args.json)
    if args.json:
        print_json(result)
    return code
