"""Alerts: plain rules over a monitoring Snapshot, incidents kept in the store, sent to channels.

``evaluate(snapshot, previous_states, now)`` is the whole rule set, a pure function (no clock,
no I/O): it returns the incidents now open and the notifications to send. An alert fires once
when its condition starts (``"status": "firing"``) and sends one ``"resolved"`` when it ends;
nothing is repeated while it holds.

Rules, over the window [now - max(monitoring.interval, 60 s), now] (whole minute buckets):

* ``success_rate`` (warning): at least ``min_requests`` (5) delivery calls in the window and
  successful/total < ``monitoring.alerting.threshold``;
* ``circuit_open`` (critical): the shared breaker is ``open`` or ``forced_open``; a ``half_open``
  circuit keeps an incident that is already firing (it is still not delivering normally) but
  does not start one, so open → half-open → open is one incident, not three;
* ``spool_high`` (warning): spool size > 80 % of ``pattern_tracking.cache_size``;
* ``dead_letters`` (warning): the dead letter holds at least one event; it resolves when the
  dead letter is empty again (``dlq replay``/``dlq purge``). New letters during an incident do
  not fire again.

The :class:`Alerter` evaluates every ``monitoring.interval`` seconds. The incidents live in the
store's ``state`` database (key ``alerts``; the last ``RESOLVED_KEPT`` resolved ones under
``alerts.resolved``, for the dashboard) and are read, evaluated and written in one write
transaction, so across restarts and across several processes on one data directory a transition
is notified once (at most once: a process killed between that commit and the send loses it).
Channels: ``log`` (logger ``pattern_tracker.alerts``), ``console`` (one line on stderr) and
``webhook`` (a JSON POST, 5 s timeout; failures are logged, never raised; the URL is never logged).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from pattern_tracker.usecases.health import Snapshot, collect, iso, window_for

log = logging.getLogger("pattern_tracker.alerts")
_internal = logging.getLogger("pattern_tracker.usecases.health")

STATE_KEY = b"alerts"
RESOLVED_KEY = b"alerts.resolved"
RESOLVED_KEPT = 20  # resolved incidents kept, newest first
WEBHOOK_TIMEOUT = 5.0
PRUNE_EVERY = 3600.0  # seconds between two prunes of counters older than metrics_retention


class AlertRules(msgspec.Struct, kw_only=True, frozen=True):
    threshold: float = 0.8  # monitoring.alerting.threshold (its default)
    min_requests: int = 5
    spool_high: float = 0.8


class Incident(msgspec.Struct, kw_only=True, frozen=True):
    """An alert that is firing (stored in the ``state`` db until it resolves)."""

    alert: str
    severity: str
    started_at: float
    message: str
    value: Any = None
    threshold: Any = None


class Resolved(msgspec.Struct, kw_only=True, frozen=True):
    """An incident that has ended (the dashboard's history of incidents)."""

    alert: str
    severity: str
    started_at: float
    resolved_at: float
    message: str  # as it was when the incident fired


_states_encoder = msgspec.json.Encoder()
_states_decoder = msgspec.json.Decoder(dict[str, Incident])
_resolved_decoder = msgspec.json.Decoder(list[Resolved])

SEVERITY = {"success_rate": "warning", "circuit_open": "critical", "spool_high": "warning", "dead_letters": "warning"}


def _conditions(s: Snapshot, previous: Mapping[str, Incident], rules: AlertRules) -> dict[str, tuple[bool, Any, Any, str]]:
    """alert -> (holds, value, threshold, message)."""
    rate = s.success_rate
    spool_limit = rules.spool_high * s.spool_bound
    circuit_holds = s.circuit in ("open", "forced_open") or (s.circuit == "half_open" and "circuit_open" in previous)
    return {
        "success_rate": (
            rate is not None and s.requests >= rules.min_requests and rate < rules.threshold,
            None if rate is None else round(rate, 4),
            rules.threshold,
            f"delivery success rate {rate:.1%} over {s.requests} call(s) in the last {s.window_seconds:.0f}s "
            f"(threshold {rules.threshold:.0%})" if rate is not None else "no delivery calls in the window",
        ),
        "circuit_open": (
            circuit_holds,
            s.circuit,
            None,
            f"circuit breaker {s.circuit} (trip count {s.circuit_trip_count}): events wait in the spool",
        ),
        "spool_high": (
            s.spool_size > spool_limit,
            s.spool_size,
            spool_limit,
            f"spool holds {s.spool_size} of {s.spool_bound} events (alert above {rules.spool_high:.0%})",
        ),
        "dead_letters": (
            s.dead_letters > 0,
            s.dead_letters,
            0,
            f"{s.dead_letters} event(s) in the dead letter (`pattern-tracker dlq list`)",
        ),
    }


def evaluate(
    snapshot: Snapshot, previous_states: Mapping[str, Incident], now: float, rules: AlertRules | None = None
) -> tuple[dict[str, Incident], list[dict[str, Any]]]:
    """The alert rules (module docstring). Returns (incidents open now, notifications to send)."""
    rules = rules or AlertRules()
    states: dict[str, Incident] = {}
    notes: list[dict[str, Any]] = []
    for alert, (holds, value, threshold, message) in _conditions(snapshot, previous_states, rules).items():
        before = previous_states.get(alert)
        if holds:
            if before is None:
                inc = Incident(alert=alert, severity=SEVERITY[alert], started_at=now, message=message,
                               value=value, threshold=threshold)
                notes.append(_payload(inc, "firing", value, message, None, snapshot.data_dir))
                states[alert] = inc
            else:
                states[alert] = before  # no repeat while it holds
        elif before is not None:
            notes.append(_payload(before, "resolved", value, f"resolved: {message}", now, snapshot.data_dir))
    for alert, inc in previous_states.items():  # an alert this version no longer knows: resolve it
        if alert not in SEVERITY:
            notes.append(_payload(inc, "resolved", inc.value, f"resolved: {inc.message}", now, snapshot.data_dir))
    return states, notes


def _payload(inc: Incident, status: str, value: Any, message: str, resolved_at: float | None, data_dir: str) -> dict[str, Any]:
    return {
        "alert": inc.alert,
        "status": status,
        "severity": inc.severity,
        "message": message,
        "value": value,
        "threshold": inc.threshold,
        "started_at": iso(inc.started_at),
        "resolved_at": iso(resolved_at),
        "service": "pattern-tracker",
        "data_dir": data_dir,
    }


# ---------------------------------------------------------------------------------------
# The evaluator loop and the channels


def load_states(store: Any, txn: Any = None) -> dict[str, Incident]:
    def get(t: Any) -> Any:
        return t.get(STATE_KEY, db=store.db("state"))

    raw = get(txn) if txn is not None else store.read(get)
    if not raw:
        return {}
    try:
        return _states_decoder.decode(bytes(raw))
    except msgspec.DecodeError:
        _internal.warning("alert state in the store is unreadable: starting with no open incident")
        return {}


def load_resolved(store: Any, txn: Any = None) -> list[Resolved]:
    """The last ``RESOLVED_KEPT`` resolved incidents, newest first."""
    def get(t: Any) -> Any:
        return t.get(RESOLVED_KEY, db=store.db("state"))

    raw = get(txn) if txn is not None else store.read(get)
    if not raw:
        return []
    try:
        return _resolved_decoder.decode(bytes(raw))
    except msgspec.DecodeError:
        return []  # unreadable history: shown as none, rewritten at the next resolution


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Alerter:
    """Evaluates the rules every ``monitoring.interval`` and sends transitions to the channels."""

    def __init__(
        self,
        cfg: Any,
        store: Any,
        *,
        console: Callable[[str], None] = _stderr,
        clock: Callable[[], float] = time.time,
        interval: float | None = None,
    ) -> None:
        mon = cfg.monitoring
        self.cfg = cfg
        self.store = store
        self.enabled = bool(mon.alerting.enabled)
        self.channels: Sequence[str] = list(mon.alerting.channels)
        self.webhook_url: str | None = mon.alerting.webhook_url
        self.interval = float(mon.interval if interval is None else interval)
        self.window = window_for(mon.interval)
        self.rules = AlertRules(threshold=mon.alerting.threshold)
        self.console = console
        self.clock = clock
        self._session: Any = None
        self._pruned_at = 0.0
        if self.enabled and "webhook" in self.channels and not self.webhook_url:
            _internal.warning("alerting channel webhook is configured without monitoring.alerting.webhook_url: skipped")

    async def tick(self) -> list[dict[str, Any]]:
        """One evaluation: read a snapshot, advance the incidents (one write txn), send."""
        now = self.clock()
        self._maybe_prune(now)
        if not self.enabled:
            return []
        snap = await collect(self.cfg, self.store, None, now=now, window=self.window)

        def txn_fn(txn: Any) -> list[dict[str, Any]]:
            previous = load_states(self.store, txn)
            states, notes = evaluate(snap, previous, now, self.rules)
            txn.put(STATE_KEY, _states_encoder.encode(states), db=self.store.db("state"))
            ended = [Resolved(alert=inc.alert, severity=inc.severity, started_at=inc.started_at, resolved_at=now,
                              message=inc.message) for alert, inc in previous.items() if alert not in states]
            if ended:
                kept = sorted(ended, key=lambda r: r.alert) + load_resolved(self.store, txn)
                txn.put(RESOLVED_KEY, _states_encoder.encode(kept[:RESOLVED_KEPT]), db=self.store.db("state"))
            return notes

        notes = await asyncio.to_thread(self.store.write, txn_fn)
        for note in notes:
            await self.send(note)
        return notes

    def _maybe_prune(self, now: float) -> None:
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        from pattern_tracker.core.counters import Counters

        try:
            n = Counters(self.store).prune(now - self.cfg.monitoring.metrics_retention)
            if n:
                _internal.debug("pruned %d metric bucket(s) older than metrics_retention", n)
        except Exception as exc:  # noqa: BLE001
            _internal.warning("pruning metrics failed: %s: %s", type(exc).__name__, exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate now, then every interval, until ``stop``. Never raises (it logs)."""
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception as exc:  # noqa: BLE001 - monitoring must never stop the pipeline
                    _internal.warning("alert evaluation failed: %s: %s", type(exc).__name__, exc)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.interval)
                except TimeoutError:
                    pass
        finally:
            await self.close()

    async def send(self, note: Mapping[str, Any]) -> None:
        for channel in self.channels:
            try:
                if channel == "log":
                    self._log(note)
                elif channel == "console":
                    self.console(_line(note))
                elif channel == "webhook" and self.webhook_url:
                    await self._webhook(note)
            except Exception as exc:  # noqa: BLE001 - one channel failing must not stop the others
                _internal.warning("alert channel %s failed: %s", channel, type(exc).__name__)

    @staticmethod
    def _log(note: Mapping[str, Any]) -> None:
        if note["status"] == "resolved":
            level = logging.INFO
        else:
            level = logging.ERROR if note["severity"] == "critical" else logging.WARNING
        log.log(level, "%s", _line(note))

    async def _webhook(self, note: Mapping[str, Any]) -> None:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT))
        try:
            async with self._session.post(self.webhook_url, data=json.dumps(note),
                                          headers={"Content-Type": "application/json"}) as resp:
                if resp.status >= 300:
                    _internal.warning("alert webhook answered HTTP %d for %s %s", resp.status, note["alert"], note["status"])
        except Exception as exc:  # noqa: BLE001 - never the URL: it is a secret
            reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            _internal.warning("alert webhook failed for %s %s: %s", note["alert"], note["status"], reason)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


def _line(note: Mapping[str, Any]) -> str:
    return f"pattern-tracker alert {note['status'].upper()} {note['alert']} ({note['severity']}): {note['message']}"
