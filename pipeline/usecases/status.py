"""The status read model: circuit, throughput, spool, errors, latency and drainer of a data
directory, as plain data. ``status``, ``circuit status`` and the Python API read it; none prints."""

from __future__ import annotations

import socket
import time
from typing import Any

import msgspec

from pattern_tracker.core.timefmt import iso, when
from pattern_tracker.usecases.health import last_delivery_at

THROUGHPUT_WINDOWS = (60, 300)
ERROR_WINDOW = 300
LATENCY_WINDOW = 300


def circuit_view(breaker: Any, now: float) -> dict[str, Any]:
    s = breaker.state()
    cfg = breaker.settings
    due = breaker.retry_at()
    if s.state == "closed":
        next_trial = "not needed: calls flow (closed)"
    elif s.state == "disabled":
        next_trial = "not needed: the breaker is disabled, calls flow"
    elif s.state == "forced_open":
        next_trial = "never: forced open until `pattern-tracker circuit reset`"
    elif s.state == "half_open":
        next_trial = f"now: half-open, {s.trials_started} of {cfg.half_open_attempts} trial call(s) started"
    elif due is not None and due > now:
        next_trial = when(due, now)
    else:
        next_trial = "now: the recovery timeout has passed, the next call is a trial"
    return {
        "state": s.state,
        "failure_count": s.failure_count,
        "last_failure_time": s.last_failure_time,
        "opened_at": s.opened_at,
        "trip_count": s.trip_count,
        "calls_not_permitted": s.calls_not_permitted,
        "retry_at": due,
        "next_trial": next_trial,
        "trials_started": s.trials_started,
        "trials_succeeded": s.trials_succeeded,
        "changed_at": s.changed_at or None,
        "settings": msgspec.to_builtins(cfg),
    }


def _bucket_start(ts: float) -> float:
    from pattern_tracker.core.counters import BUCKET_SECONDS

    return float(int(ts) // BUCKET_SECONDS * BUCKET_SECONDS)


def _windowed(counters: Any, now: float, seconds: float, prefix: str) -> tuple[dict[str, int], float]:
    """Counter sums over the buckets overlapping the last ``seconds``, and the time they cover."""
    since = now - seconds
    return counters.totals(since, prefix=prefix), max(1.0, now - _bucket_start(since))


def _target(cfg: Any) -> str:
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
    """Everything ``status`` shows, as plain data (also used by the Python facade)."""
    from pattern_tracker.core import metrics
    from pattern_tracker.composition import breaker_for, spool_for
    from pattern_tracker.core.counters import Counters
    from pattern_tracker.state.dead_letter import DeadLetters
    from pattern_tracker.settings.hook_settings import recorded_config_error
    from pattern_tracker.core.lease import DrainLease

    now = time.time() if now is None else now
    counters = Counters(store)

    view = circuit_view(breaker_for(cfg, store), now)
    circuit = {k: view[k] for k in ("state", "failure_count", "trip_count", "calls_not_permitted", "opened_at",
                                    "last_failure_time", "retry_at", "next_trial")}
    circuit["recovery_timeout"] = view["settings"]["recovery_timeout"]

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

    stats = spool_for(cfg, store).stats(now)
    spool = {
        "size": stats.size,
        "bound": stats.bound,
        "fill": round(stats.size / stats.bound, 4) if stats.bound else None,
        "oldest_age": None if stats.oldest_age is None else round(stats.oldest_age, 1),
        "overflow_policy": cfg.pattern_tracking.overflow_policy,
        "dropped": stats.dropped,
        "expired": stats.expired,
    }

    req, span = _windowed(counters, now, ERROR_WINDOW, "requests.")
    by_class = {k.removeprefix("requests.failed."): v for k, v in sorted(req.items()) if k.startswith("requests.failed.")}
    failed = sum(by_class.values())
    total = req.get("requests.total", 0)
    errors = {
        "window_seconds": round(span, 1),
        "requests": total,
        "failed": failed,
        "error_rate": round(failed / total, 4) if total else None,
        "by_class": by_class,
    }

    hist, span = _windowed(counters, now, LATENCY_WINDOW, "hist.delivery.")
    latency: dict[str, Any] = {"window_seconds": round(span, 1), **metrics.histogram(hist, "delivery")}
    if latency["mean_ms"] is not None:
        latency["mean_ms"] = round(latency["mean_ms"], 1)

    last = last_delivery_at(store)

    holder = DrainLease(store).holder(now)
    drainer = None if holder is None else {"pid": holder.pid, "host": holder.host,
                                           "this_host": holder.host == socket.gethostname()}
    return {
        "now": now,
        "now_iso": iso(now),
        "data_dir": str(cfg.storage.data_dir_path),
        "target": _target(cfg),
        "circuit": circuit,
        "throughput": throughput,
        "spool": spool,
        "dead_letters": DeadLetters(store).size(),
        "errors": errors,
        "latency": latency,
        "last_delivery_at": last,
        "last_delivery_iso": iso(last),
        "last_delivery_age": None if last is None else round(max(0.0, now - last), 1),
        "drainer": drainer,
        "config_error": None if (bad := recorded_config_error(store)) is None else {**bad, "at": iso(bad["at"])},
    }
