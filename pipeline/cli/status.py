"""``pattern-tracker status [--watch] [--interval S] [--json]``: the data directory on one screen.

    circuit state (and when the next trial call is admitted), throughput (events acknowledged
    per second over the last minute and the last 5 minutes), spool size/bound and oldest age,
    dead letters, errors (failed delivery calls over the last 5 minutes, by class), delivery
    latency p50/p95/p99, the last delivery and who holds the drain lease.

Everything is read from the store (the per-minute counters of pipeline/core/counters.py, the shared
circuit state, the spool), so it works while ``run`` or a ``drain`` is going in another process
and never talks to the service. ``--watch`` redraws every ``--interval`` seconds (default 1) in
place on a terminal (ANSI clear + home; the cursor is hidden and restored), or prints one block
after another when stdout is not a terminal; Ctrl-C (or SIGTERM) ends it with exit code 0.
``--json`` prints the same data as one JSON object (with ``--watch``: one compact object per line).

Counters live in one-minute buckets: "the last minute" is the buckets that overlap it, and the
rate divides by the time those buckets cover (``window_seconds``), so it is never overstated.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from pattern_tracker.cli.support import EXIT_OK, bounded, clean, open_store_for
from pattern_tracker.core.timefmt import duration, when
from pattern_tracker.usecases.status import collect


CLEAR_HOME = "\x1b[H\x1b[2J"
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``status`` to the ``pattern-tracker`` subparsers."""

    help = "one screen of live status read from the data directory (circuit, throughput, spool, errors, latency)"
    p = sub.add_parser("status", parents=[common], help=help, description=help + ". "
                       "Reads only the store: works while `run` is going, never calls the service.")
    p.add_argument("--watch", action="store_true", help="refresh until Ctrl-C (in place on a terminal)")
    p.add_argument("--interval", type=bounded(float, 0, 3600, above=True), default=1.0, metavar="S", help="seconds between refreshes (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON (one object per refresh with --watch)")
    p.set_defaults(func=cmd_status)


# ---------------------------------------------------------------------------------------
# Text


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g} ms" if value < 1000 else f"{value / 1000:g} s"


def render(data: dict[str, Any]) -> str:

    now = data["now"]
    c = data["circuit"]
    circuit = f"{c['state']} (failures {c['failure_count']}, trips {c['trip_count']})"
    if c["state"] not in ("closed", "disabled"):
        circuit += f"; next trial: {c['next_trial']}"

    t1, t5 = data["throughput"]["last_1m"], data["throughput"]["last_5m"]
    throughput = (f"{t1['events_per_second']:.2f} ev/s last 1m, {t5['events_per_second']:.2f} ev/s last 5m "
                  f"({t5['delivered']} delivered, {t5['already_existed']} already there in 5m)")

    s = data["spool"]
    fill = f" ({s['fill']:.0%} full)" if s["fill"] is not None else ""
    oldest = "-" if s["oldest_age"] is None else f"{duration(s['oldest_age'])} old"
    spool = f"{s['size']} / {s['bound']} events{fill}, oldest {oldest}"

    e = data["errors"]
    if e["requests"] == 0 and e["failed"] == 0:
        errors = "none (no delivery calls in 5m)"
    else:
        classes = ", ".join(f"{k} {v}" for k, v in e["by_class"].items())
        errors = f"{e['failed']} of {e['requests']} calls failed in 5m" + (f" ({classes})" if classes else "")

    lat = data["latency"]
    latency = ("- (no delivery calls in 5m)" if not lat["count"] else
               f"p50 {_ms(lat['p50_ms'])}, p95 {_ms(lat['p95_ms'])}, p99 {_ms(lat['p99_ms'])} "
               f"({lat['count']} calls in 5m, mean {_ms(lat['mean_ms'])})")

    d = data["drainer"]
    drainer = "none (the next hook or `drain` starts one)" if d is None else (
        f"pid {d['pid']}" + ("" if d["this_host"] else f" on {clean(d['host'])}"))
    rows = [
        ("delivering to", data["target"]),
        ("circuit", circuit),
        ("throughput", throughput),
        ("spool", spool),
        ("dead letters", f"{data['dead_letters']} letter(s)" + (" (see `pattern-tracker dlq list`)" if data["dead_letters"] else "")),
        ("errors", errors),
        ("latency", latency),
        ("last delivery", when(data["last_delivery_at"], now) if data["last_delivery_at"] else "never"),
        ("drainer", drainer),
    ]
    bad = data.get("config_error")
    if bad:  # first: nothing below is delivered until it is fixed
        rows.insert(0, ("config", f"{bad['error']} (seen by a {bad['source']} at {bad['at']}; "
                                  "edits wait in the spool until it is fixed)"))
    lines = [f"pattern-tracker status  {clean(data['data_dir'])}  {data['now_iso']}"]
    lines += [f"  {key + ':':<15} {clean(value)}" for key, value in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Command


def cmd_status(args: argparse.Namespace) -> int:

    cfg, store = open_store_for(args)
    if not args.watch:
        data = collect(cfg, store)
        print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else render(data))
        return EXIT_OK
    return _watch(cfg, store, args.interval, args.json)


def _watch(cfg: Any, store: Any, interval: float, as_json: bool) -> int:
    """Redraw until Ctrl-C/SIGTERM; exit 0 with the terminal as it was."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    out = sys.stdout
    tty = out.isatty() and not as_json
    try:
        if tty:
            out.write(HIDE_CURSOR)
        while True:
            data = collect(cfg, store)
            if as_json:
                out.write(json.dumps(data, ensure_ascii=False) + "\n")
            elif tty:
                out.write(CLEAR_HOME + render(data) + "\n\n(refresh every "
                          f"{interval:g}s, Ctrl-C to quit)\n")
            else:
                out.write(render(data) + "\n\n")
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:  # `status --watch | head`: the BrokenPipeError ends it in commands.run, as for every command
        signal.signal(signal.SIGTERM, previous)
        if tty:
            try:
                out.write(SHOW_CURSOR)
                out.flush()
            except OSError:
                pass
    return 0
