"""``pattern-tracker circuit``: show or set the circuit breaker shared by every process.

    circuit status | reset | open | disable

The breaker is state in the data directory's LMDB environment (state.circuit_store.SharedBreaker,
the same object ``PatternTracker.circuit_breaker`` drives), so a change here is seen at once by a
``run`` going in another process.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pattern_tracker.cli.support import EXIT_OK, action_group, add_action, open_store_for, print_json
from pattern_tracker.core.timefmt import duration, iso, when
from pattern_tracker.usecases.status import circuit_view


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``circuit`` to the ``pattern-tracker`` subparsers."""
    g = action_group(sub, common, "circuit", "show or set the circuit breaker shared by every process",
                     "circuit_command")
    add_action(g, common, "status", "state, counts and when the next trial call is admitted", cmd_circuit_status)
    add_action(g, common, "reset", "close the circuit and clear its failure counts", cmd_circuit_reset)
    add_action(g, common, "open", "force the circuit open: nothing is sent until `circuit reset`", cmd_circuit_open)
    add_action(g, common, "disable", "turn the breaker off: everything is sent, nothing is counted", cmd_circuit_disable)


def _print_circuit(view: dict[str, Any], now: float, as_json: bool, action: str | None = None) -> None:
    if as_json:
        out = dict(view)
        for key in ("last_failure_time", "opened_at", "retry_at", "changed_at"):
            out[key + "_iso"] = iso(view[key])
        if action:
            out["action"] = action
        print_json(out)
        return
    cfg = view["settings"]
    if cfg["mode"] == "consecutive":
        threshold = f"opens after {cfg['failure_threshold']} consecutive failures"
    else:
        threshold = f"opens at {cfg['failure_rate_threshold']:.0%} failures of the last {cfg['window_size']} calls"
    lines = [
        ("state", view["state"] + (f" ({action})" if action else "")),
        ("failure_count", f"{view['failure_count']} ({threshold})"),
        ("last_failure_time", when(view["last_failure_time"], now)),
        ("opened_at", when(view["opened_at"], now)),
        ("trip_count", view["trip_count"]),
        ("calls_not_permitted", view["calls_not_permitted"]),
        ("next trial (retry_at)", view["next_trial"]),
        ("recovery_timeout", duration(cfg["recovery_timeout"])),
        ("changed_at", when(view["changed_at"], now)),
    ]
    print("circuit breaker")
    for key, value in lines:
        print(f"  {key + ':':<23} {value}")


def _circuit(args: argparse.Namespace, action: str | None) -> int:
    from pattern_tracker.composition import breaker_for

    cfg, store = open_store_for(args)
    breaker = breaker_for(cfg, store)
    if action == "reset":
        breaker.reset()
    elif action == "forced open":
        breaker.force_open()
    elif action == "disabled":
        breaker.disable()
    now = time.time()
    _print_circuit(circuit_view(breaker, now), now, args.json, action)
    return EXIT_OK


def cmd_circuit_status(args: argparse.Namespace) -> int:
    return _circuit(args, None)


def cmd_circuit_reset(args: argparse.Namespace) -> int:
    return _circuit(args, "reset")


def cmd_circuit_open(args: argparse.Namespace) -> int:
    return _circuit(args, "forced open")


def cmd_circuit_disable(args: argparse.Namespace) -> int:
    return _circuit(args, "disabled")
