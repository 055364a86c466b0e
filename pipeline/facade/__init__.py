"""``pattern_tracker.PatternTracker``: the resilience guide's Python API, for programs that embed the tracker.

    from pattern_tracker import PatternTracker

    with PatternTracker("my.yaml") as tracker:
        result = tracker.track_pattern_creation(code, {"file_path": "src/app.py", "session_id": "s1"})
        tracker.get_health_summary()      # from the store: circuit, spool, dead letters, last delivery
        tracker.get_error_metrics()       # from the shared counters (pipeline/core/metrics.py names)
        tracker.circuit_breaker.reset()   # the breaker shared by every process on the data directory
        tracker.pattern_cache.cleanup()   # the spool (the guide's "pattern cache")
        tracker.service_monitor.get_service_status()
        tracker.record_metric("reviews", 1, {"team": "core"})

A tracked change goes the way a hook's does: screened (deny globs, secret redaction), versioned
and queued in the spool in one write transaction — nothing here waits for the network — and
then delivered by a drainer: the running ``pattern-tracker run``, or a detached
``pattern-tracker drain`` started like the hook starts one (nobody holds the drain lease, the
circuit is not open, ``hook.spawn_drainer`` is on). ``deliver="inline"`` drains in this process
instead (``Pipeline.run(drain=True)``), ``deliver="none"`` only queues.

The views (``circuit_breaker``, ``pattern_cache``, ``service_monitor``) are in facade/views.py;
draining is usecases.drain, the same drain as ``pattern-tracker drain``.

Importing this module costs nothing beyond the standard library: configuration, the store and
the pipeline are loaded when first used.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from pattern_tracker.facade.views import CircuitBreakerView, PatternCacheView, ServiceMonitor, SpoolEntries, run_coro

__all__ = ["CircuitBreakerView", "Delivery", "PatternCacheView", "PatternTracker", "ServiceMonitor", "SpoolEntries",
           "metric_name"]

Delivery = Literal["background", "inline", "none"]

_CONTEXT_STR_KEYS = ("session_id", "tool_name", "tool_use_id", "reason", "language")
_CONTEXT_KEYS = ("file_path", *_CONTEXT_STR_KEYS, "occurred_at")
_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_STORE_REFS: dict[str, int] = {}  # Store handles are per process and per path: close the last user's only
_STORE_LOCK = threading.Lock()
# record_metric: value × 1000 is added to an unsigned 64-bit counter (1.8e19), with room for many.
MAX_METRIC_VALUE = 1e12


def metric_name(name: str, tags: Mapping[str, Any] | None = None) -> str:
    """``custom.<name>[.<key>_<value>…]``: only ``[A-Za-z0-9_.-]``, no empty parts, ≤ 120 chars."""

    def clean(part: str) -> str:
        part = _METRIC_CHARS.sub("_", str(part)).strip("._-")
        return re.sub(r"\.{2,}", ".", part)

    base = clean(name)
    if not base:
        raise ValueError(f"metric name {name!r} has no usable characters (letters, digits, _ . -)")
    parts = [base] + [f"{clean(k).replace('.', '_')}_{clean(v).replace('.', '_')}" for k, v in sorted((tags or {}).items())]
    return ("custom." + ".".join(p for p in parts if p))[:120]


class PatternTracker:
    """Track code changes from Python; see the module docstring.

    ``PatternTracker(config_path=None, debug=False)`` loads the configuration at once
    (``config/default.yaml`` → ``config_path`` → environment; a bad value raises
    ``pattern_tracker.settings.config.ConfigError``) and opens the store on first use. Thread-safe for the
    store calls it makes (LMDB serialises writers); one ``inline`` drain runs at a time.
    """

    def __init__(self, config_path: str | os.PathLike[str] | None = None, debug: bool = False) -> None:
        from pattern_tracker.settings.config import load_config

        # "" is a file name like any other (the CLI's --config "" is refused too), not "no file"
        self.config_path = os.path.abspath(os.fspath(config_path)) if config_path is not None else None
        self.loaded = load_config(self.config_path)
        self.config = self.loaded.config
        self.debug = debug
        from pattern_tracker.logs import add_secret

        add_secret(self.config.api.token)  # never in a log line, whatever logs it
        add_secret(self.config.serve.token)
        if debug:
            from pattern_tracker.logs import setup_logging

            lg = self.config.logging
            setup_logging(lg.level, lg.format, lg.file, debug=True)
        self._store: Any = None
        self._store_key: str | None = None
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._telemetry: Any = None
        self._closed = False
        self.circuit_breaker = CircuitBreakerView(self)
        self.pattern_cache = PatternCacheView(self)
        self.service_monitor = ServiceMonitor(self)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        """The data directory's LMDB store, opened on first use."""
        if self._closed:
            raise RuntimeError("this PatternTracker is closed")
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from pattern_tracker.composition import open_store

                    store = open_store(self.config)
                    with _STORE_LOCK:
                        _STORE_REFS[store.path] = _STORE_REFS.get(store.path, 0) + 1
                    self._store_key = store.path
                    self._store = store
        return self._store

    def close(self) -> None:
        """Close the store (when no other tracker of this process uses it) and shut down this tracker's
        telemetry (what it still batched is exported, a Prometheus endpoint stops). Idempotent."""
        with self._lock:
            store, self._store = self._store, None
            self._closed = True
            if store is not None and self._store_key is not None:
                with _STORE_LOCK:
                    left = _STORE_REFS.get(self._store_key, 1) - 1
                    if left <= 0:
                        _STORE_REFS.pop(self._store_key, None)
                        store.close()
                    else:
                        _STORE_REFS[self._store_key] = left
            if self._telemetry is not None:
                self._telemetry.shutdown()  # spans and metrics still batched are exported; a Prometheus endpoint stops
                self._telemetry = None

    def __enter__(self) -> PatternTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> PatternTracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PatternTracker data_dir={str(self.config.storage.data_dir_path)!r}>"

    # -- tracking ------------------------------------------------------------------------------

    def _change(self, code: str, context: Mapping[str, Any]) -> Any:
        from pattern_tracker.core.capture import Change, PayloadError, check_occurred_at, check_storable

        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        if not isinstance(context, Mapping):
            raise TypeError(f"context must be a dict, got {type(context).__name__}")
        unknown = [key for key in context if key not in _CONTEXT_KEYS]
        if unknown:  # a typo'd key would be dropped without a word (context['sesion_id'])
            import difflib  # only on this error path

            close = difflib.get_close_matches(str(unknown[0]), _CONTEXT_KEYS, n=1)
            raise ValueError(f"context has unknown key(s) {', '.join(map(repr, unknown))}: it takes "
                             f"{', '.join(_CONTEXT_KEYS)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        path = context.get("file_path")
        if not isinstance(path, str) or not path.strip():
            raise ValueError("context['file_path'] is required (a non-empty str)")
        for key in _CONTEXT_STR_KEYS:
            value = context.get(key)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"context[{key!r}] must be a str, got {type(value).__name__}")
        language = context.get("language")
        if language is not None and not 0 < len(language) <= 50:
            raise ValueError("context['language'] must be 1 to 50 characters")
        occurred_at = context.get("occurred_at")
        change = Change(path=path, code=code,
                        occurred_at=time.time() if occurred_at is None else check_occurred_at(occurred_at, "context['occurred_at']"),
                        tool_name=context.get("tool_name"), tool_use_id=context.get("tool_use_id"),
                        session_id=context.get("session_id"), reason=context.get("reason"))
        try:
            check_storable(change)
        except PayloadError as exc:
            raise ValueError(f"cannot track this change: {exc}") from None
        return change

    def _ingest(self, change: Any, language: str | None) -> dict[str, Any]:
        """Screen, version and spool one change (one write transaction); the result dict."""
        from pattern_tracker.core.identity import normalise_path
        from pattern_tracker.state.ingest import Ingest
        from pattern_tracker.core.redact import Redactor
        from pattern_tracker.state.spool import Spool, SpoolFull, SpoolLimits, never_blocking

        cfg = self.config
        store = self.store
        pt = cfg.pattern_tracking

        class _Spool(Spool):
            def append(self, txn: Any, ev: Any, now: float) -> None:
                if language and isinstance(ev, dict):
                    ev["language"] = language  # the caller knows better than the file extension
                super().append(txn, ev, now)

        # Like the hook: `block` would make the caller wait for a drainer; drop the newest instead.
        spool = _Spool(store, never_blocking(SpoolLimits(bound=pt.cache_size, policy=pt.overflow_policy, ttl=pt.cache_ttl)))
        ingest = Ingest(store, spool, redactor=Redactor(list(cfg.redaction.extra_patterns), enabled=cfg.redaction.enabled),
                        deny_globs=list(cfg.redaction.deny_globs))
        result: dict[str, Any] = {"event_id": None, "pattern_id": None, "pattern_version": None, "event_type": None,
                                  "queued": False, "file_path": normalise_path(change.path)}
        try:
            events = ingest.accept_changes([change], "api", time.time())
        except SpoolFull:
            events = []
        if events:
            ev = events[0]
            result.update(event_id=ev.event_id, pattern_id=ev.pattern_id, pattern_version=ev.pattern_version,
                          event_type=ev.event_type, parent_pattern_ids=list(ev.parent_pattern_ids), queued=True)
            return result
        if ingest.denied:
            result["reason"] = "denied: the file matches redaction.deny_globs"
        elif ingest.unchanged:
            head = store.head(change.path)
            result["reason"] = "unchanged: the content equals the latest version"
            if head is not None:
                result.update(pattern_id=head.pattern_id, pattern_version=str(head.version))
        else:
            result["reason"] = f"spool full: dropped (cache_size {pt.cache_size}, overflow_policy {pt.overflow_policy})"
        return result

    def _disabled(self) -> dict[str, Any]:
        return {"event_id": None, "pattern_id": None, "pattern_version": None, "event_type": None, "queued": False,
                "reason": "disabled: pattern_tracking.enabled is false"}

    def _start_drainer(self) -> str:
        """Start a detached ``pattern-tracker drain`` when the hook would; returns what happened."""
        from pattern_tracker.usecases.drainer import claim_drainer_start, spawn_drainer
        from pattern_tracker.core.lease import DrainLease

        cfg = self.config
        if not cfg.hook.spawn_drainer:
            return "queued (hook.spawn_drainer is off: `run` or `drain` delivers it)"
        now = time.time()
        lease = DrainLease(self.store)
        holder = lease.holder(now)
        if holder is not None:
            return f"queued: a drainer is running (pid {holder.pid})"
        # The same claim as the hook's, so a burst of calls starts one drainer, not one each.
        recovery = cfg.resilience.circuit_breaker.recovery_timeout
        if not self.store.write(lambda txn: claim_drainer_start(txn, self.store, lease, recovery, now)):
            return "queued: the circuit is open, or a drainer is starting (delivered once it lets calls through)"
        spawn_drainer(self.config_path, str(cfg.storage.data_dir_path))
        return "drainer started"

    def _deliver_sync(self, result: dict[str, Any], deliver: Delivery) -> dict[str, Any]:
        if deliver == "inline":
            result["drain"] = self.drain()
            result["delivery"] = self._settled(result["event_id"])
        elif deliver == "background":
            result["delivery"] = self._start_drainer()
        else:
            result["delivery"] = "queued"
        return result

    def _settled(self, event_id: str) -> str:
        from pattern_tracker.state.spool import Spool

        spool = Spool(self.store)
        queued = self.store.read(lambda txn: spool.queued(txn, event_id))
        return "pending: still in the spool" if queued else "settled: acknowledged or dead-lettered"

    def track_pattern_creation(self, code: str, context: Mapping[str, Any], deliver: Delivery = "background") -> dict[str, Any]:
        """Record one new content of ``context["file_path"]``; returns what was queued.

        ``context``: ``file_path`` (required), ``session_id``, ``tool_name``, ``tool_use_id``,
        ``reason``, ``language`` (else detected from the extension), ``occurred_at`` (epoch s).
        Returns ``{"event_id", "pattern_id", "pattern_version", "event_type", "queued",
        "parent_pattern_ids", "file_path", "delivery"}``, plus ``"reason"`` when nothing was
        queued (unchanged content, a deny-listed file, a full spool, tracking disabled) and
        ``"drain"`` (the drain's summary) with ``deliver="inline"``.
        """
        if deliver not in ("background", "inline", "none"):
            raise ValueError(f"deliver must be 'background', 'inline' or 'none', got {deliver!r}")
        change = self._change(code, context)
        if not self.config.pattern_tracking.enabled:
            return self._disabled()
        result = self._ingest(change, context.get("language"))
        if not result["queued"]:
            return result
        return self._deliver_sync(result, deliver)

    async def atrack_pattern_creation(self, code: str, context: Mapping[str, Any],
                                      deliver: Delivery = "background") -> dict[str, Any]:
        """``track_pattern_creation`` for asyncio code: the store write runs off the event loop;
        ``deliver="inline"`` awaits the drain on this loop."""
        if deliver not in ("background", "inline", "none"):
            raise ValueError(f"deliver must be 'background', 'inline' or 'none', got {deliver!r}")
        change = self._change(code, context)
        if not self.config.pattern_tracking.enabled:
            return self._disabled()
        result = await asyncio.to_thread(self._ingest, change, context.get("language"))
        if not result["queued"]:
            return result
        if deliver == "inline":
            result["drain"] = await self.adrain()
            result["delivery"] = await asyncio.to_thread(self._settled, result["event_id"])
        elif deliver == "background":
            result["delivery"] = await asyncio.to_thread(self._start_drainer)
        else:
            result["delivery"] = "queued"
        return result

    # -- delivery ------------------------------------------------------------------------------

    async def adrain(self, until_empty: bool = False) -> dict[str, Any]:
        """Deliver the spool now in this process (``pattern-tracker drain``, usecases.drain); the
        run's summary. When another process holds the drain lease it delivers them: ``status: "busy"``.
        """
        import msgspec

        from pattern_tracker.usecases.drain import drain_spool

        outcome = await drain_spool(self.config, self.store, until_empty=until_empty, telemetry=self._telemetry_once)
        if outcome.summary is None:
            return {"status": "busy", "holder_pid": outcome.holder.pid, "holder_host": outcome.holder.host}
        out: dict[str, Any] = msgspec.to_builtins(outcome.summary)
        out["status"] = "empty" if outcome.summary.left_in_spool == 0 else "pending"
        return out

    def _telemetry_once(self) -> Any:
        """This tracker's telemetry providers, built by its first drain and shut down by ``close``."""
        if self._telemetry is None:
            from pattern_tracker.composition import build_telemetry

            self._telemetry = build_telemetry(self.config)
        return self._telemetry

    def drain(self, until_empty: bool = False) -> dict[str, Any]:
        """``adrain`` from synchronous code (one at a time per tracker)."""
        with self._drain_lock:
            return run_coro(self.adrain(until_empty))  # type: ignore[no-any-return]

    # -- health and metrics ----------------------------------------------------------------------

    def get_health_summary(self, check_service: bool = False) -> dict[str, Any]:
        """Health from the store (no network unless ``check_service``): the monitoring module's
        snapshot and rules (pipeline/usecases/health.py, the same as ``pattern-tracker health``), plus
        the guide's flat keys: ``status``, ``api_available``, ``circuit_state``, ``cache_size``,
        ``oldest_age``, ``dead_letters``, ``last_delivery_at`` (epoch seconds) …

        ``api_available`` is the service's own answer with ``check_service=True``; otherwise the
        circuit's view (not open, half-open or forced open).
        """
        from pattern_tracker.usecases import health as mon

        read_snapshot, assess, rules_for, document = mon.read_snapshot, mon.assess, mon.rules_for, mon.health_document
        import msgspec

        snap = read_snapshot(self.config, self.store)
        service = None
        if check_service:
            service = self.service_monitor.get_service_status()
            snap = msgspec.structs.replace(snap, api_available=bool(service["available"]),
                                           api_status=str(service["status"]), api_detail=str(service["detail"]))
        health = assess(snap, rules_for(self.config))
        out: dict[str, Any] = dict(document(snap, health))
        out.update(
            api_available=snap.api_available if check_service else snap.circuit not in ("open", "half_open", "forced_open"),
            api_available_from="service" if check_service else "circuit",
            circuit_state=snap.circuit,
            cache_size=snap.spool_size,
            cache_bound=snap.spool_bound,
            oldest_age=snap.spool_oldest_age,
            last_delivery_at=snap.last_delivery_at,
            last_delivery_iso=mon.iso(snap.last_delivery_at),
            checked_at=snap.now,
            success_rate=snap.success_rate,
        )
        if service is not None:
            out["service"] = service
        return out

    def get_error_metrics(self, window: float | None = None) -> dict[str, Any]:
        """The guide's error metrics from the store's shared counters (every process): the
        monitoring module's ``error_metrics`` (``pattern-tracker metrics``) over ``window``
        seconds (default ``monitoring.metrics_retention``), plus flat keys and ``custom_metrics``
        (see :meth:`record_metric`). ``success_rate`` is None when no delivery call was made;
        ``avg_response_time`` is the guide's mean delivery call in seconds (0.0 then). The flat
        keys restate the document's figures; only ``custom_metrics`` is read here."""
        from pattern_tracker.core.bounds import bounded_number
        from pattern_tracker.core.counters import Counters
        from pattern_tracker.usecases.health import error_metrics

        span = float(self.config.monitoring.metrics_retention if window is None
                     else bounded_number(window, 0, above=True, name="window (seconds)"))
        store = self.store
        now = time.time()
        out: dict[str, Any] = dict(error_metrics(self.config, store, now=now, since_seconds=span))
        c = Counters(store).totals(now - span, prefix="custom.")
        custom: dict[str, dict[str, float]] = {}
        for key, value in sorted(c.items()):
            if key.endswith(".count") and value:
                name = key[: -len(".count")]
                total_milli = c.get(f"{name}.sum_milli", 0)
                custom[name] = {"count": value, "sum": total_milli / 1000, "mean": total_milli / 1000 / value}
        events, delivery = out["events"], out["response_time_ms"]
        out.update(
            # errors also lists classes seen only in the trend window (count 0): not failed in this one
            failed_by_class={cls: e["count"] for cls, e in out["errors"].items() if e["count"]},
            events_delivered=events["delivered"],
            events_already_existed=events["already_existed"],
            events_dead_lettered=events["dead_lettered"],
            response_time_p50_ms=delivery["p50_ms"],
            response_time_p95_ms=delivery["p95_ms"],
            response_time_p99_ms=delivery["p99_ms"],
            custom_metrics=custom,
            window_seconds=span,
        )
        return out

    def record_metric(self, name: str, value: float, tags: Mapping[str, Any] | None = None) -> str:
        """Add one observation to the shared counters: ``custom.<name>[.<tag>_<value>…].count`` (+1)
        and ``….sum_milli`` (+value × 1000). Counters only grow: ``value`` must be from 0 to 1e12.
        Returns the counter's base name (shown by ``get_error_metrics()["custom_metrics"]``)."""
        from pattern_tracker.core.bounds import bounded_number
        from pattern_tracker.core.counters import Counters

        bounded_number(value, 0, MAX_METRIC_VALUE, name="metric value")
        if tags is not None and not isinstance(tags, Mapping):
            raise TypeError(f"tags must be a dict, got {type(tags).__name__}")
        base = metric_name(name, tags)

        Counters(self.store).bump({f"{base}.count": 1, f"{base}.sum_milli": int(round(value * 1000))}, time.time())
        return base
