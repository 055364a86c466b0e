"""The status view: circuit, throughput, spool, errors, latency and drainer of a data directory,
as plain data. ``status`` and ``circuit status`` show it; none prints. The shared facts (circuit,
spool, dead letters, last delivery, configuration error, request counts) come from the one
snapshot of pipeline/usecases/health.py; only the status's own windows and the drain lease are
read here."""

from __future__ import annotations

import socket
import time
from typing import Any

import msgspec

from pattern_tracker.core.timefmt import iso, when
from pattern_tracker.usecases.health import config_error_document, read_snapshot

THROUGHPUT_WINDOWS = (60, 300)
ERROR_WINDOW = 300
LATENCY_WINDOW = 300


def next_trial(state: str, trials_started: int, half_open_attempts: int, due: float | None, now: float) -> str:
    """When the circuit lets the next call through, in words (``status`` and ``circuit status``)."""
    if state == "closed":
        return "not needed: calls flow (closed)"
    if state == "disabled":
        return "not needed: the breaker is disabled, calls flow"
    if state == "forced_open":
        return "never: forced open until `pattern-tracker circuit reset`"
    if state == "half_open":
        return f"now: half-open, {trials_started} of {half_open_attempts} trial call(s) started"
    if due is not None and due > now:
        return when(due, now)
    return "now: the recovery timeout has passed, the next call is a trial"


def circuit_view(breaker: Any, now: float) -> dict[str, Any]:
    """The whole circuit (``circuit status``, a drain's summary): the breaker read once."""
    from pattern_tracker.operators.breaker import retry_at

    s = breaker.state()
    cfg = breaker.settings
    due = retry_at(s, cfg)
    return {
        "state": s.state,
        "failure_count": s.failure_count,
        "last_failure_time": s.last_failure_time,
        "opened_at": s.opened_at,
        "trip_count": s.trip_count,
        "calls_not_permitted": s.calls_not_permitted,
        "retry_at": due,
        "next_trial": next_trial(s.state, s.trials_started, cfg.half_open_attempts, due, now),
        "trials_started": s.trials_started,
        "trials_succeeded": s.trials_succeeded,
        "changed_at": s.changed_at or None,
        "settings": msgspec.to_builtins(cfg),
    }


def _bucket_start(ts: float) -> float:
    from pattern_tracker.core.counters import BUCKET_SECONDS

    return float(int(ts) // BUCKET_SECONDS * BUCKET_SECONDS)


def _span(now: float, seconds: float) -> float:
    """The time the buckets overlapping the last ``seconds`` cover."""
    return max(1.0, now - _bucket_start(now - seconds))


def _windowed(counters: Any, now: float, seconds: float, prefix: str) -> tuple[dict[str, int], float]:
    """Counter sums over the buckets overlapping the last ``seconds``, and the time they cover."""
    return counters.totals(now - seconds, prefix=prefix), _span(now, seconds)


def describe_target(cfg: Any) -> str:
    """Where events go, in words: the embedded store or the service's scheme://host:port (never credentials)."""
    if not cfg.api.url:
        return "embedded lineage store"
    from urllib.parse import urlsplit

    try:
        u = urlsplit(cfg.api.url)
        host = u.hostname or "?"
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return "Phase 4 API (unparsable URL)"
    return f"Phase 4 API {u.scheme}://{host}{port}"  # never credentials, path or query


def collect(cfg: Any, store: Any, now: float | None = None) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data: the snapshot (request counts over
    ``ERROR_WINDOW``), the throughput and latency windows, and the drain lease's holder."""
    from pattern_tracker.core import metrics
    from pattern_tracker.composition import breaker_for
    from pattern_tracker.core.counters import Counters
    from pattern_tracker.core.lease import DrainLease

    now = time.time() if now is None else now
    snap = read_snapshot(cfg, store, now, ERROR_WINDOW)
    counters = Counters(store)

    settings = breaker_for(cfg, store).settings  # the configuration's; no store read
    circuit = {
        "state": snap.circuit,
        "failure_count": snap.circuit_failure_count,
        "trip_count": snap.circuit_trip_count,
        "calls_not_permitted": snap.circuit_calls_not_permitted,
        "opened_at": snap.circuit_opened_at,
        "last_failure_time": snap.circuit_last_failure_time,
        "retry_at": snap.circuit_retry_at,
        "next_trial": next_trial(snap.circuit, snap.circuit_trials_started, settings.half_open_attempts,
                                 snap.circuit_retry_at, now),
        "recovery_timeout": msgspec.to_builtins(settings)["recovery_timeout"],
    }

    throughput: dict[str, Any] = {}
    for seconds in THROUGHPUT_WINDOWS:
        c, span = _windowed(counters, now, seconds, "events.")
        acked = c.get("events.delivered", 0) + c.get("events.already_existed", 0)
        throughput[f"last_{seconds // 60}m"] = {
            "events_per_second": round(acked / span, 3),
            "delivered": c.get("events.delivered", 0),
            "already_existed": c.get("events.already_existed", 0),
            "dead_lettered": c.get("events.dead_lettered", 0),
            "window_seconds": round(span, 1),
        }

    spool = {
        "size": snap.spool_size,
        "bound": snap.spool_bound,
        "fill": round(snap.spool_size / snap.spool_bound, 4) if snap.spool_bound else None,
        "oldest_age": None if snap.spool_oldest_age is None else round(snap.spool_oldest_age, 1),
        "overflow_policy": cfg.pattern_tracking.overflow_policy,
        "dropped": snap.spool_dropped,
        "expired": snap.spool_expired,
    }

    errors = {
        "window_seconds": round(_span(now, ERROR_WINDOW), 1),
        "requests": snap.requests,
        "failed": snap.failed,
        "error_rate": round(snap.failed / snap.requests, 4) if snap.requests else None,
        "by_class": snap.failed_by_class,
    }

    hist, span = _windowed(counters, now, LATENCY_WINDOW, "hist.delivery.")
    latency: dict[str, Any] = {"window_seconds": round(span, 1), **metrics.histogram(hist, "delivery")}
    if latency["mean_ms"] is not None:
        latency["mean_ms"] = round(latency["mean_ms"], 1)

    last = snap.last_delivery_at
    holder = DrainLease(store).holder(now)
    drainer = None if holder is None else {"pid": holder.pid, "host": holder.host,
                                           "this_host": holder.host == socket.gethostname()}
    return {
        "now": now,
        "now_iso": iso(now),
        "data_dir": snap.data_dir,
        "target": describe_target(cfg),
        "circuit": circuit,
        "throughput": throughput,
        "spool": spool,
        "dead_letters": snap.dead_letters,
        "errors": errors,
        "latency": latency,
        "last_delivery_at": last,
        "last_delivery_iso": iso(last),
        "last_delivery_age": None if last is None else round(max(0.0, now - last), 1),
        "drainer": drainer,
        "config_error": config_error_document(snap),
    }
