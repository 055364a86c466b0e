"""``pattern-tracker health`` and ``pattern-tracker metrics``: cross-process health and error metrics.

    health [--json]                       healthy / degraded / unhealthy with the reasons;
                                          exit 0 healthy, 1 degraded, 2 unhealthy
    metrics [--json] [--since SECONDS]    the error metrics over monitoring.metrics_retention
                                          (or SECONDS), summed over every process of the data dir

Exit code 2 of ``health`` means unhealthy; it is also the usage/config error code of every
command (a usage error prints a message on stderr, an unhealthy report prints the report).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from pattern_tracker.cli.support import EXIT_OK, bounded, open_store_for, print_json
from pattern_tracker.core.timefmt import duration


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``health`` and ``metrics`` to the ``pattern-tracker`` subparsers."""
    help_ = "healthy/degraded/unhealthy with reasons (exit 0/1/2): service, circuit, spool, dead letters"
    p = sub.add_parser(
        "health", parents=[common], help=help_,
        description=help_ + ". Exit 0 healthy, 1 degraded, 2 unhealthy (2 is also the usage-error code).",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_health)
    help_ = "error metrics summed over every process of the data directory"
    p = sub.add_parser("metrics", parents=[common], help=help_, description=help_)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--since", type=bounded(float, 0, above=True), metavar="SECONDS", default=None,
                   help="window in seconds (default monitoring.metrics_retention)")
    p.set_defaults(func=cmd_metrics)


# ---------------------------------------------------------------------------------------
# health


async def _health(cfg: Any, store: Any) -> tuple[Any, Any]:
    from pattern_tracker.usecases import health as monitoring
    from pattern_tracker.composition import build_sink

    sink = build_sink(cfg, store)
    try:
        snap = await monitoring.collect(cfg, store, sink)
    finally:
        await sink.close()
    return snap, monitoring.assess(snap, monitoring.rules_for(cfg))


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{duration(seconds)} ago"


def cmd_health(args: argparse.Namespace) -> int:
    from pattern_tracker.usecases import health as monitoring

    cfg, store = open_store_for(args)
    snap, h = asyncio.run(_health(cfg, store))
    doc = monitoring.health_document(snap, h)
    if args.json:
        print_json(doc)
        return h.exit_code
    svc = "available" if snap.api_available else "unavailable"
    detail = f" ({snap.api_status}{': ' + snap.api_detail if snap.api_detail else ''})"
    rate = "-" if snap.success_rate is None else f"{snap.success_rate:.1%}"
    oldest = "" if snap.spool_oldest_age is None else f", oldest {duration(snap.spool_oldest_age)} old"
    last = _age(None if snap.last_delivery_at is None else snap.now - snap.last_delivery_at)
    print(f"pattern-tracker: {h.status.upper()}")
    for r in h.reasons:
        print(f"  - [{r.severity}] {r.message}")
    rows = [
        ("service", f"{svc}{detail} [{snap.sink}]"),
        ("circuit", f"{snap.circuit} (failures {snap.circuit_failure_count}, trips {snap.circuit_trip_count})"),
        ("spool", f"{snap.spool_size} / {snap.spool_bound} events{oldest}"),
        ("dead letters", str(snap.dead_letters)),
        ("last delivery", last),
        ("success rate", f"{rate} of {snap.requests} call(s) in the last {snap.window_seconds:.0f}s"),
    ]
    for key, value in rows:
        print(f"  {key + ':':<15} {value}")
    return h.exit_code


# ---------------------------------------------------------------------------------------
# metrics


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _hist(h: dict[str, Any]) -> str:
    if not h["count"]:
        return "-"
    return f"avg {_ms(h['mean_ms'])}, p50 ≤ {_ms(h['p50_ms'])}, p95 ≤ {_ms(h['p95_ms'])}, p99 ≤ {_ms(h['p99_ms'])} ({h['count']})"


def cmd_metrics(args: argparse.Namespace) -> int:
    from pattern_tracker.usecases import health as monitoring

    cfg, store = open_store_for(args)
    m = monitoring.error_metrics(cfg, store, time.time(), args.since)
    if args.json:
        print_json(m)
        return EXIT_OK
    rate = "-" if m["success_rate"] is None else f"{m['success_rate']:.1%}"
    r = m["retries"]
    ev = m["events"]
    sp = m["spool"]
    errors = ", ".join(f"{cls} {e['count']} ({e['trend']}: {e['last']} vs {e['previous']})"
                       for cls, e in m["errors"].items()) or "none"
    red = ", ".join(f"{k} {v}" for k, v in m["redactions"].items()) or "none"
    rows = [
        ("requests", f"{m['total_requests']} total, {m['successful_requests']} successful, "
                     f"{m['failed_requests']} failed, success rate {rate}"),
        ("errors", errors),
        ("circuit", f"{m['circuit_state']}, {m['circuit_breaker_trips']} trip(s)"),
        ("retries", f"{m['retry_attempts']} attempt(s); ok first try {r['successful_without_retry']}, "
                    f"ok after retry {r['successful_with_retry']}, failed first try {r['failed_without_retry']}, "
                    f"failed after retry {r['failed_with_retry']}"),
        ("response time", _hist(m["response_time_ms"])),
        ("end to end", _hist(m["end_to_end_latency_ms"])),
        ("events", f"delivered {ev['delivered']}, already existed {ev['already_existed']}, "
                   f"dead-lettered {ev['dead_lettered']}"),
        ("last delivery", m["last_delivery_at"] or "-"),
        ("cached events", f"{m['cached_events']} (entered {sp['entered']}, spilled {sp['spilled']}, "
                          f"replayed {sp['replayed']}, expired {sp['expired']}, dropped {sp['dropped']})"),
        ("dead letter", f"{m['dead_letter']['size']} (entered {m['dead_letter'].get('entered', 0)})"),
        ("redactions", red),
        ("hook", f"{m['hook'].get('invocations', 0)} invocation(s)"
                 + (f", {m['hook']['config_errors']} with a configuration error" if m["hook"].get("config_errors") else "")),
    ]
    if m.get("config_error"):
        bad = m["config_error"]
        rows.insert(0, ("config", f"{bad['error']} (seen by a {bad['source']} at {bad['at']}; edits wait in the spool)"))
    print(f"pattern-tracker metrics, last {duration(m['window']['seconds'])} (every process of {m['data_dir']})")
    for key, value in rows:
        print(f"  {key + ':':<15} {value}")
    print(f"  (error trend: the last {m['error_trend_minutes']} minutes against the {m['error_trend_minutes']} before)")
    return EXIT_OK
