"""The operations dashboard, as data: what the page at ``/ui/`` of the status port shows.

Nothing here computes a figure of its own. One look at the data directory (:func:`observe`, run
every ~2 s by the sampler in a worker thread) reads the one read model, ``health.read_snapshot``
(circuit, spool, dead letters, quarantine, last delivery; request counts over the health window),
``health.error_metrics`` over the last hour (the document of ``pattern-tracker metrics --json
--since 3600``: totals, error classes and their trend), the alert incidents the alerter keeps in
the store, and the shared counters summed since the sampler's origin (a history sample,
pipeline/usecases/dashboard_history.py). :func:`document` turns the latest look, the latest
service probe and the history's points into the page's JSON. Because every figure comes from the
store, it adds up over every hook, drainer and ``run`` of the data directory.

The page is read-only: each panel carries the exact CLI command that acts on it
(:data:`COMMANDS`); operations stay in the CLI.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pattern_tracker.core.counters import BUCKET_SECONDS, Counters
from pattern_tracker.core.timefmt import iso, when
from pattern_tracker.usecases.alerting import Incident, Resolved, load_resolved, load_states
from pattern_tracker.usecases.dashboard_history import COUNTER_PREFIXES, Point, Sample, columns
from pattern_tracker.usecases.health import (
    Snapshot,
    assess,
    config_error_document,
    error_metrics,
    read_snapshot,
    rules_for,
)
from pattern_tracker.usecases.status import describe_target, next_trial

TOTALS_SECONDS = 3600  # the "last hour" totals: `metrics --json --since 3600`
RECENT_DEAD_LETTERS = 5
REASON_CHARS = 200

# What a user runs to act on each panel (the page only shows them). tests/test_dashboard.py
# parses every one with the real CLI parser, so a renamed command fails a test.
COMMANDS: dict[str, list[dict[str, str]]] = {
    "health": [
        {"command": "pattern-tracker health", "does": "the same verdict and reasons (exit 0/1/2)"},
        {"command": "pattern-tracker status --watch", "does": "the status view in a terminal, refreshed"},
    ],
    "circuit": [
        {"command": "pattern-tracker circuit status", "does": "state, counts and when the next trial call is admitted"},
        {"command": "pattern-tracker circuit reset", "does": "close the circuit now and clear its failure counts"},
        {"command": "pattern-tracker circuit open", "does": "force it open: nothing is sent until `circuit reset`"},
    ],
    "spool": [
        {"command": "pattern-tracker drain", "does": "deliver the spool's backlog now"},
        {"command": "pattern-tracker cache stats", "does": "size, bound, oldest age and the spool's flow"},
    ],
    "delivery": [
        {"command": "pattern-tracker metrics --since 3600", "does": "these totals, as text (--json for JSON)"},
    ],
    "dead_letters": [
        {"command": "pattern-tracker dlq list", "does": "one line per dead letter, with its reason"},
        {"command": "pattern-tracker dlq replay --all", "does": "after a fix: back into the spool, then drain"},
    ],
    "quarantine": [
        {"command": "pattern-tracker cache quarantine list", "does": "undecodable spool entries, with why"},
        {"command": "pattern-tracker cache quarantine export DIR", "does": "their raw bytes, to inspect"},
    ],
}


class Probe(msgspec.Struct, kw_only=True, frozen=True):
    """The service's answer to a health probe through the configured sink (as ``health`` asks it)."""

    available: bool
    status: str
    detail: str
    checked_at: float


class Observation(msgspec.Struct, kw_only=True, frozen=True):
    """One look at the data directory: what every panel shows at one instant."""

    snapshot: Snapshot
    sample: Sample
    metrics: dict[str, Any]
    incidents: list[Incident]
    resolved: list[Resolved]
    recent_dead_letters: list[dict[str, Any]]


def origin_for(now: float, span: float) -> float:
    """The sampler's origin: the start of the minute bucket ``span`` seconds ago (the history's refill reaches it)."""
    return float(int(now - span) // BUCKET_SECONDS * BUCKET_SECONDS)


def read_counts(store: Any, origin: float) -> dict[str, int]:
    """The counters a history sample keeps, summed since ``origin`` (cumulative: they only grow)."""
    counters = Counters(store)
    out: dict[str, int] = {}
    for prefix in COUNTER_PREFIXES:
        out.update(counters.totals(origin, prefix=prefix))
    return out


def read_buckets(store: Any, origin: float) -> dict[int, dict[str, int]]:
    """The same counters per minute bucket since ``origin`` (to refill the history after a start)."""
    counters = Counters(store)
    out: dict[int, dict[str, int]] = {}
    for prefix in COUNTER_PREFIXES:
        for bucket, names in counters.by_bucket(origin, prefix=prefix).items():
            out.setdefault(bucket, {}).update(names)
    return out


def _recent_dead_letters(store: Any) -> list[dict[str, Any]]:
    from pattern_tracker.state.dead_letter import DeadLetters

    dead = DeadLetters(store)
    last = dead.last_seq()
    rows = dead.list(limit=RECENT_DEAD_LETTERS, after=max(0, last - RECENT_DEAD_LETTERS))
    return [{"seq": seq, "failed_at": letter.failed_at, "error_class": letter.error_class,
             "http_status": letter.http_status, "file_path": letter.event.file_path,
             "reason": (letter.reason or "")[:REASON_CHARS]} for seq, letter in reversed(rows)]


def observe(cfg: Any, store: Any, now: float, origin: float) -> Observation:
    """One look at the data directory (blocking: run it in a worker thread)."""
    snap = read_snapshot(cfg, store, now)
    sample = Sample(t=now, counts=read_counts(store, origin), spool_size=snap.spool_size,
                    spool_oldest_age=snap.spool_oldest_age, circuit=snap.circuit)
    return Observation(
        snapshot=snap,
        sample=sample,
        metrics=error_metrics(cfg, store, now, TOTALS_SECONDS),
        incidents=sorted(load_states(store).values(), key=lambda i: i.started_at, reverse=True),
        resolved=load_resolved(store),
        recent_dead_letters=_recent_dead_letters(store),
    )


# ---------------------------------------------------------------------------------------
# The page's document


def _health(cfg: Any, snap: Snapshot, probe: Probe | None) -> dict[str, Any]:
    if probe is not None:
        snap = msgspec.structs.replace(snap, api_available=probe.available, api_status=probe.status,
                                       api_detail=probe.detail)
    verdict = assess(snap, rules_for(cfg))
    return {
        "status": verdict.status,
        "reasons": [msgspec.to_builtins(r) for r in verdict.reasons],
        "service": None if probe is None else {
            "available": probe.available, "status": probe.status, "detail": probe.detail,
            "checked_at": iso(probe.checked_at)},
        "config_error": config_error_document(snap),
        "last_delivery_at": iso(snap.last_delivery_at),
        "last_delivery": None if snap.last_delivery_at is None else when(snap.last_delivery_at, snap.now),
        "window_seconds": snap.window_seconds,
        "success_rate": None if snap.success_rate is None else round(snap.success_rate, 4),
        "requests": snap.requests,
        "commands": COMMANDS["health"],
    }


def _circuit(cfg: Any, snap: Snapshot) -> dict[str, Any]:
    cb = cfg.resilience.circuit_breaker
    return {
        "state": snap.circuit,
        "failure_count": snap.circuit_failure_count,
        "mode": cb.mode,
        "opens_when": (f"{cb.failure_threshold} consecutive failures" if cb.mode == "consecutive" else
                       f"{cb.failure_rate_threshold:.0%} of the last {cb.window_size} calls fail "
                       f"(at least {cb.minimum_calls} calls)"),
        "trip_count": snap.circuit_trip_count,
        "calls_not_permitted": snap.circuit_calls_not_permitted,
        "opened_at": iso(snap.circuit_opened_at),
        "last_failure_at": iso(snap.circuit_last_failure_time),
        "retry_at": iso(snap.circuit_retry_at),
        "next_trial": next_trial(snap.circuit, snap.circuit_trials_started, cb.half_open_attempts,
                                 snap.circuit_retry_at, snap.now),
        "recovery_timeout": cb.recovery_timeout,
        "commands": COMMANDS["circuit"],
    }


def _spool(cfg: Any, snap: Snapshot) -> dict[str, Any]:
    return {
        "size": snap.spool_size,
        "bound": snap.spool_bound,
        "fill": round(snap.spool_size / snap.spool_bound, 4) if snap.spool_bound else None,
        "oldest_age_seconds": None if snap.spool_oldest_age is None else round(snap.spool_oldest_age, 1),
        "overflow_policy": cfg.pattern_tracking.overflow_policy,
        "commands": COMMANDS["spool"],
    }


def _incident(inc: Incident, now: float) -> dict[str, Any]:
    return {"alert": inc.alert, "severity": inc.severity, "message": inc.message,
            "started_at": iso(inc.started_at), "started": when(inc.started_at, now)}


def _resolved(r: Resolved, now: float) -> dict[str, Any]:
    return {"alert": r.alert, "severity": r.severity, "message": r.message, "started_at": iso(r.started_at),
            "resolved_at": iso(r.resolved_at), "resolved": when(r.resolved_at, now),
            "lasted_seconds": round(max(0.0, r.resolved_at - r.started_at), 1)}


def document(cfg: Any, obs: Observation, probe: Probe | None, points: list[Point], latest: Point | None, *,
             sampler: dict[str, Any]) -> dict[str, Any]:
    """The JSON the page renders: the latest look, the latest probe, the history's ``points``
    (those after the page's ``since``) and its ``latest`` point (the current rates). ``sampler``:
    its id, period and span (the page starts its history afresh when the id changes: another
    process, another history)."""
    snap, m = obs.snapshot, obs.metrics
    now = snap.now
    return {
        "now": now,
        "now_iso": iso(now),
        "data_dir": snap.data_dir,
        "target": describe_target(cfg),
        "sampler": sampler,
        "health": _health(cfg, snap, probe),
        "circuit": _circuit(cfg, snap),
        "spool": _spool(cfg, snap),
        "delivery": {
            "delivered_per_s": None if latest is None else latest.delivered_per_s,
            "p50_ms": None if latest is None else latest.p50_ms,
            "p99_ms": None if latest is None else latest.p99_ms,
            "last_hour": {
                "seconds": TOTALS_SECONDS,
                "events": m["events"],
                "total_requests": m["total_requests"],
                "successful_requests": m["successful_requests"],
                "failed_requests": m["failed_requests"],
                "success_rate": m["success_rate"],
                "response_time_ms": m["response_time_ms"],
                "retry_attempts": m["retry_attempts"],
                "hook_invocations": m["hook"].get("invocations", 0),
            },
            "commands": COMMANDS["delivery"],
        },
        "errors": {"classes": m["errors"], "trend_minutes": m["error_trend_minutes"], "window_seconds": TOTALS_SECONDS},
        "alerts": {
            "enabled": bool(cfg.monitoring.enabled and cfg.monitoring.alerting.enabled),
            "interval_seconds": cfg.monitoring.interval,
            "open": [_incident(i, now) for i in obs.incidents],
            "resolved": [_resolved(r, now) for r in obs.resolved],
        },
        "dead_letters": {
            "count": snap.dead_letters,
            "entered_last_hour": m["dead_letter"].get("entered", 0),
            "recent": [{**row, "failed_at": iso(row["failed_at"])} for row in obs.recent_dead_letters],
            "commands": COMMANDS["dead_letters"],
        },
        "quarantine": {"count": snap.quarantined, "commands": COMMANDS["quarantine"]},
        "history": columns(points),
    }
