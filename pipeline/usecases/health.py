"""Cross-process health and error metrics, read from the store every process shares.

``read_snapshot`` is the one reader of a data directory's shared state: it reads one
:class:`Snapshot` (circuit, spool, dead letters, last delivery, the recorded configuration error,
request counts over a window); ``collect`` adds the service's own health body when a sink is given.
Every face reads through it: ``health``, ``metrics`` (``error_metrics``), ``status``
(pipeline/usecases/status.py), the status server and the Python facade. ``assess``
turns a snapshot into healthy / degraded / unhealthy with the reasons; it is a pure function.
``error_metrics`` sums the shared counters (pipeline/core/metrics.py) over a window into the guide's
error metrics. Since the counters live in the store, the figures add up over every hook,
drainer and ``run`` that used the data directory.

Health rules (docs/operations.md, "Health, metrics and status", documents the same list):

unhealthy
  * a hook could not read the configuration (it keeps the edits, nothing delivers them);
  * the circuit is ``forced_open`` (an operator stopped delivery);
  * the spool is at ≥ 100 % of ``pattern_tracking.cache_size`` (events are being dropped or blocked);
  * the service is unavailable AND (the circuit is open/half-open OR events are waiting in the spool).
degraded
  * the circuit is open or half-open;
  * the service is unavailable (circuit closed, nothing waiting yet);
  * the spool is > 80 % of its bound;
  * at least ``MIN_REQUESTS`` delivery calls in the window and successful/total < alerting.threshold;
  * the dead letter holds events;
  * the oldest spooled event is older than ``STALE_SPOOL_SECONDS`` (300 s).
healthy
  * none of the above.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from pattern_tracker.core.timefmt import iso
from pattern_tracker.core import metrics
from pattern_tracker.core.counters import BUCKET_SECONDS, Counters

Status = Literal["healthy", "degraded", "unhealthy"]

MIN_REQUESTS = 5  # fewer delivery calls in the window: the success rate says nothing
SPOOL_HIGH = 0.8  # fraction of cache_size
STALE_SPOOL_SECONDS = 300.0  # oldest spooled event older than this: delivery is not keeping up
MIN_WINDOW_SECONDS = 60.0  # the counters have minute buckets
TREND_MINUTES = 5  # error trend: the last 5 minute-buckets against the 5 before
OPEN_STATES = ("open", "half_open", "forced_open")

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_UNHEALTHY = 0, 1, 2
EXIT_CODES: dict[str, int] = {"healthy": EXIT_HEALTHY, "degraded": EXIT_DEGRADED, "unhealthy": EXIT_UNHEALTHY}


class Snapshot(msgspec.Struct, kw_only=True, frozen=True):
    """What one look at the data directory (and, optionally, the service) shows."""

    now: float
    data_dir: str
    window_seconds: float
    # The service, from sink.health() (its health body); None when it was not asked.
    api_available: bool | None = None
    api_status: str | None = None
    api_detail: str = ""
    sink: str = ""
    # The shared circuit breaker.
    circuit: str = "closed"
    circuit_failure_count: int = 0
    circuit_trip_count: int = 0
    circuit_opened_at: float | None = None
    circuit_last_failure_time: float | None = None
    circuit_calls_not_permitted: int = 0
    circuit_retry_at: float | None = None  # when an open circuit admits a trial (None unless open)
    circuit_trials_started: int = 0
    # The spool and the dead letter.
    spool_size: int = 0
    spool_bound: int = 1000
    spool_oldest_age: float | None = None
    # Events the spool dropped (overflow) or let expire, over the counters' retention.
    spool_dropped: int = 0
    spool_expired: int = 0
    dead_letters: int = 0
    quarantined: int = 0  # spool entries that could not be decoded, kept aside (`cache quarantine list`)
    last_delivery_at: float | None = None
    # Delivery calls over [now - window_seconds, now] (whole minute buckets).
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    failed_by_class: dict[str, int] = msgspec.field(default_factory=dict)  # sorted by class; sums to failed
    # The configuration error a hook recorded (pipeline/settings/hook_settings.py): the one-line error,
    # who saw it and when; None when every process could read its configuration.
    config_error: str | None = None
    config_error_source: str | None = None
    config_error_at: float | None = None

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.requests if self.requests else None


class Reason(msgspec.Struct, kw_only=True, frozen=True):
    severity: Literal["degraded", "unhealthy"]
    check: str
    message: str


class Health(msgspec.Struct, kw_only=True, frozen=True):
    status: Status
    reasons: list[Reason]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


class Rules(msgspec.Struct, kw_only=True, frozen=True):
    """The thresholds of the health rules (alerting.threshold comes from the configuration)."""

    success_threshold: float = 0.8  # monitoring.alerting.threshold's default
    min_requests: int = MIN_REQUESTS
    spool_high: float = SPOOL_HIGH
    stale_spool_seconds: float = STALE_SPOOL_SECONDS


def window_for(interval: float) -> float:
    """The window of the success rate (health and alerts): max(monitoring.interval, 60 s)."""
    return max(float(interval), MIN_WINDOW_SECONDS)


def _pct(n: float) -> str:
    return f"{n:.0%}"


def assess(s: Snapshot, rules: Rules = Rules()) -> Health:
    """The health rules (module docstring). Pure: no clock, no I/O."""
    reasons: list[Reason] = []

    def add(severity: Literal["degraded", "unhealthy"], check: str, message: str) -> None:
        reasons.append(Reason(severity=severity, check=check, message=message))

    waiting = s.spool_size > 0
    fill = s.spool_size / s.spool_bound if s.spool_bound else 0.0
    unavailable = s.api_available is False
    what = f"the service is unavailable ({s.api_status}{': ' + s.api_detail if s.api_detail else ''})"

    if s.config_error:
        add("unhealthy", "config", f"{s.config_error} (seen by a {s.config_error_source or 'hook'} at "
                                   f"{iso(s.config_error_at) or '?'}; its edits wait in the spool until it is fixed)")
    if s.circuit == "forced_open":
        add("unhealthy", "circuit", "circuit forced open by an operator: nothing is delivered until `circuit reset`")
    elif s.circuit in ("open", "half_open"):
        add("degraded", "circuit", f"circuit {s.circuit} after {s.circuit_failure_count} failure(s): deliveries are held")
    if s.spool_bound and fill >= 1.0:
        add("unhealthy", "spool", f"spool full: {s.spool_size}/{s.spool_bound} events, new events are dropped or blocked")
    elif s.spool_bound and fill > rules.spool_high:
        add("degraded", "spool", f"spool {_pct(fill)} full ({s.spool_size}/{s.spool_bound} events)")
    if unavailable:
        if s.circuit in OPEN_STATES or waiting:
            add("unhealthy", "service", f"{what} and {s.spool_size} event(s) are waiting")
        else:
            add("degraded", "service", f"{what}; nothing is waiting yet")
    rate = s.success_rate
    if rate is not None and s.requests >= rules.min_requests and rate < rules.success_threshold:
        add("degraded", "success_rate", f"success rate {_pct(rate)} of {s.requests} delivery call(s) in the last "
                                        f"{s.window_seconds:.0f}s is below {_pct(rules.success_threshold)}")
    if s.dead_letters > 0:
        add("degraded", "dead_letters", f"{s.dead_letters} event(s) in the dead letter (`pattern-tracker dlq list`)")
    if s.spool_oldest_age is not None and s.spool_oldest_age > rules.stale_spool_seconds:
        add("degraded", "spool_age", f"the oldest spooled event waits for {s.spool_oldest_age:.0f}s "
                                     f"(> {rules.stale_spool_seconds:.0f}s)")
    if any(r.severity == "unhealthy" for r in reasons):
        status: Status = "unhealthy"
    elif reasons:
        status = "degraded"
    else:
        status = "healthy"
    return Health(status=status, reasons=reasons)


# ---------------------------------------------------------------------------------------
# Reading the store


def last_delivery_at(store: Any) -> float | None:
    raw = store.read(lambda txn: txn.get(metrics.LAST_DELIVERY_KEY, db=store.db("state")))
    if not raw:
        return None
    try:
        return float(bytes(raw).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None


def read_snapshot(cfg: Any, store: Any, now: float | None = None, window: float | None = None) -> Snapshot:
    """Everything but the service's health, from the store (synchronous: run it in a thread).
    Request counts cover ``window`` (default ``window_for(monitoring.interval)``)."""
    from pattern_tracker.composition import breaker_for, spool_for
    from pattern_tracker.operators.breaker import retry_at
    from pattern_tracker.state.dead_letter import DeadLetters
    from pattern_tracker.settings.hook_settings import recorded_config_error

    now = time.time() if now is None else now
    window = window_for(cfg.monitoring.interval) if window is None else window
    bad = recorded_config_error(store) or {}
    spooled = spool_for(cfg, store)
    spool = spooled.stats(now)
    breaker = breaker_for(cfg, store)
    b = breaker.state()
    req = Counters(store).totals(now - window, prefix="requests.")
    by_class = _strip(req, "requests.failed.")
    return Snapshot(
        now=now,
        data_dir=str(cfg.storage.data_dir_path),
        window_seconds=window,
        sink="http" if cfg.api.url else "embedded",
        circuit=b.state,
        circuit_failure_count=b.failure_count,
        circuit_trip_count=b.trip_count,
        circuit_opened_at=b.opened_at,
        circuit_last_failure_time=b.last_failure_time,
        circuit_calls_not_permitted=b.calls_not_permitted,
        circuit_retry_at=retry_at(b, breaker.settings),
        circuit_trials_started=b.trials_started,
        spool_size=spool.size,
        spool_bound=spool.bound,
        spool_oldest_age=(max(0.0, spool.oldest_age) if spool.oldest_age is not None else None),
        spool_dropped=spool.dropped,
        spool_expired=spool.expired,
        dead_letters=DeadLetters(store).size(),
        quarantined=spooled.quarantine_size(),
        last_delivery_at=last_delivery_at(store),
        requests=req.get("requests.total", 0),
        succeeded=req.get("requests.succeeded", 0),
        failed=sum(by_class.values()),
        failed_by_class=by_class,
        config_error=bad.get("error"),
        config_error_source=bad.get("source"),
        config_error_at=bad.get("at"),
    )


async def probe(sink: Any, timeout: float = 10.0) -> tuple[bool, str, str]:
    """(available, status, detail) from ``sink.health()``; a probe that fails is 'unreachable'."""
    import asyncio

    try:
        h = await asyncio.wait_for(sink.health(), timeout)
    except TimeoutError:
        return False, "unreachable", f"no health answer within {timeout:.0f}s"
    except Exception as exc:  # noqa: BLE001 - a broken probe is an unavailable service, not a crash
        return False, "unreachable", type(exc).__name__
    return bool(h.available), str(h.status), str(h.detail or "")


async def collect(cfg: Any, store: Any, sink: Any | None, now: float | None = None,
                  window: float | None = None) -> Snapshot:
    """A snapshot of the store (read in a worker thread) plus the service's health when ``sink``."""
    import asyncio

    snap = await asyncio.to_thread(read_snapshot, cfg, store, now, window)
    if sink is None:
        return snap
    available, status, detail = await probe(sink, timeout=max(1.0, float(cfg.api.timeouts.total)))
    return msgspec.structs.replace(snap, api_available=available, api_status=status, api_detail=detail)


def config_error_document(s: Snapshot) -> dict[str, Any] | None:
    """The recorded configuration error (``at`` as ISO time) as ``metrics`` and ``status`` show it, or None."""
    if s.config_error is None:
        return None
    return {"error": s.config_error, "source": s.config_error_source, "at": iso(s.config_error_at)}


def rules_for(cfg: Any) -> Rules:
    return Rules(success_threshold=cfg.monitoring.alerting.threshold)


def health_document(s: Snapshot, h: Health) -> dict[str, Any]:
    """The JSON of ``health --json`` and of the status server's GET /health."""
    return {
        "status": h.status,
        "reasons": [msgspec.to_builtins(r) for r in h.reasons],
        "checked_at": iso(s.now),
        "config_error": None if not s.config_error else {
            "error": s.config_error, "source": s.config_error_source, "at": iso(s.config_error_at)},
        "data_dir": s.data_dir,
        "api_available": s.api_available,
        "service": {"sink": s.sink, "available": s.api_available, "status": s.api_status, "detail": s.api_detail},
        "circuit": {"state": s.circuit, "failure_count": s.circuit_failure_count, "trip_count": s.circuit_trip_count,
                    "opened_at": iso(s.circuit_opened_at), "last_failure_time": iso(s.circuit_last_failure_time)},
        "spool": {"size": s.spool_size, "bound": s.spool_bound,
                  "fill": round(s.spool_size / s.spool_bound, 4) if s.spool_bound else None,
                  "oldest_age_seconds": None if s.spool_oldest_age is None else round(s.spool_oldest_age, 3)},
        "dead_letters": s.dead_letters,
        "last_delivery_at": iso(s.last_delivery_at),
        "last_delivery_age_seconds": None if s.last_delivery_at is None else round(max(0.0, s.now - s.last_delivery_at), 3),
        "window": {"seconds": s.window_seconds, "requests": s.requests, "successful": s.succeeded, "failed": s.failed,
                   "success_rate": None if s.success_rate is None else round(s.success_rate, 4)},
    }


# ---------------------------------------------------------------------------------------
# Error metrics


def trend(last: int, previous: int) -> Literal["rising", "falling", "flat"]:
    return "rising" if last > previous else "falling" if last < previous else "flat"


def error_trends(counters: Counters, now: float, minutes: int = TREND_MINUTES) -> dict[str, dict[str, Any]]:
    """Per error class: failed calls in the last ``minutes`` minute-buckets (the current one
    included) against the ``minutes`` buckets before them."""
    current = int(now) // BUCKET_SECONDS
    last_start = (current - minutes + 1) * BUCKET_SECONDS
    prev_start = (current - 2 * minutes + 1) * BUCKET_SECONDS
    last = counters.totals(last_start, prefix="requests.failed.")
    both = counters.totals(prev_start, prefix="requests.failed.")
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(set(last) | set(both)):
        cls = key.removeprefix("requests.failed.")
        n_last = last.get(key, 0)
        n_prev = both.get(key, 0) - n_last
        out[cls] = {"last": n_last, "previous": n_prev, "trend": trend(n_last, n_prev)}
    return out


def _strip(totals: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in sorted(totals.items()) if k.startswith(prefix)}


def avg_seconds(hist: Mapping[str, float | None]) -> float:
    """Mean of a counters histogram (``metrics.histogram``) in seconds; 0.0 when it is empty."""
    mean_ms = hist.get("mean_ms")
    return round(mean_ms / 1000.0, 6) if hist.get("count") and mean_ms is not None else 0.0


def error_metrics(cfg: Any, store: Any, now: float | None = None, since_seconds: float | None = None) -> dict[str, Any]:
    """The guide's error metrics over ``since_seconds`` (default monitoring.metrics_retention):
    the snapshot over that window, plus the window's counters and spool flow."""
    from pattern_tracker.composition import spool_for

    now = time.time() if now is None else now
    window = float(cfg.monitoring.metrics_retention if since_seconds is None else since_seconds)
    since = now - window
    snap = read_snapshot(cfg, store, now, window)
    counters = Counters(store)
    t = counters.totals(since)
    total, ok, failed, failed_by_class = snap.requests, snap.succeeded, snap.failed, snap.failed_by_class
    trends = error_trends(counters, now)
    errors = {cls: {"count": n, **trends.get(cls, {"last": 0, "previous": 0, "trend": "flat"})}
              for cls, n in failed_by_class.items()}
    for cls, tr in trends.items():  # a class seen in the trend window only (a --since shorter than it)
        errors.setdefault(cls, {"count": 0, **tr})
    stats = spool_for(cfg, store).stats(now, since)
    retries = {k: t.get(f"retry.{k}", 0) for k in
               ("successful_without_retry", "successful_with_retry", "failed_without_retry", "failed_with_retry")}
    delivery = metrics.histogram(t, "delivery")
    return {
        "window": {"seconds": window, "since": iso(since), "until": iso(now),
                   "note": "totals of minute buckets starting at or after `since`, over every process of the data directory"},
        "data_dir": str(cfg.storage.data_dir_path),
        "total_requests": total,
        "successful_requests": ok,
        "failed_requests": failed,
        "success_rate": round(ok / total, 4) if total else None,
        "circuit_breaker_trips": snap.circuit_trip_count,
        "circuit_state": snap.circuit,
        "cached_events": stats.size,
        "retry_attempts": t.get("retry.attempts", 0),
        "retries": retries,
        "average_response_time_ms": delivery["mean_ms"],
        # The guide's name and unit: mean seconds per delivery call in the window, 0.0 without
        # calls (it is printed with `:.2f`); from the same counters (their µs sums).
        "avg_response_time": avg_seconds(delivery),
        "response_time_ms": delivery,
        "end_to_end_latency_ms": metrics.histogram(t, "e2e"),
        "errors": errors,
        "error_trend_minutes": TREND_MINUTES,
        "events": {"delivered": t.get("events.delivered", 0), "already_existed": t.get("events.already_existed", 0),
                   "dead_lettered": t.get("events.dead_lettered", 0)},
        "last_delivery_at": iso(snap.last_delivery_at),
        "spool": msgspec.to_builtins(stats),
        "dead_letter": {"size": snap.dead_letters, **_strip(t, "dead_letter.")},
        "redactions": _strip(t, "redaction."),
        "hook": _strip(t, "hook."),
        "config_error": config_error_document(snap),
    }
