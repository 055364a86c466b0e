"""Replay of the spool's backlog: the spool fed to the graph, oldest first, each file's versions
in order, whenever the circuit lets traffic through; only by the holder of the drain lease.
When replay catches up, live events flow straight in again (the flow leaves backlog mode).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pattern_tracker.core.lease import DrainLease
from pattern_tracker.model.events import PatternEvent
from pattern_tracker.operators.backoff import RetryPolicy
from pattern_tracker.runtime.background import Background
from pattern_tracker.runtime.counters import StoreCounters
from pattern_tracker.runtime.flow import Flow
from pattern_tracker.runtime.settings import RuntimeSettings
from pattern_tracker.runtime.summary import RunSummary
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.state.spool import Spool
from pattern_tracker.telemetry import Telemetry

# Replay reads this many batches of the spool at a time and puts each file's versions in order
# within them (spills land in the spool in the order they failed, not in chain order).
REPLAY_WINDOW = 20


def chain_order(events: list[PatternEvent]) -> list[PatternEvent]:
    """The same events, each file's versions ascending, every file keeping the slots it had.

    A child spilled before its parent (it failed first) would otherwise reach the service
    first and be refused with "parent not found" until the parent comes round.
    """
    slots: dict[str | None, list[int]] = {}
    for i, ev in enumerate(events):
        slots.setdefault(ev.file_path, []).append(i)
    out = list(events)
    for positions in slots.values():
        if len(positions) > 1:
            ordered = sorted((events[i] for i in positions), key=lambda ev: _version_key(ev.pattern_version))
            for pos, ev in zip(positions, ordered):
                out[pos] = ev
    return out


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


class Backlog:
    def __init__(self, settings: RuntimeSettings, policy: RetryPolicy, breaker: SharedBreaker, lease: DrainLease,
                 spool: Spool, background: Background, flow: Flow, counters: StoreCounters, summary: RunSummary,
                 telemetry: Telemetry) -> None:
        self._settings = settings
        self._policy = policy
        self._breaker = breaker
        self._lease = lease
        self._spool = spool
        self._background = background
        self._flow = flow
        self._counters = counters
        self._summary = summary
        self._replay_stage = telemetry.stage("replay")
        self._m = telemetry.pipeline

    def service_unavailable(self) -> bool:
        """The circuit keeps deliveries out now (open until its trial time, or forced open):
        the spool cannot drain before then. The replay loop's own test."""
        due = self._breaker.retry_at()
        return self._breaker.state().state == "forced_open" or (due is not None and time.time() < due)

    async def replay(self, stop: asyncio.Event, finish: asyncio.Event, until_empty: bool = False) -> None:
        """Source: feed the spool to the graph, oldest first, whenever the circuit allows.

        Runs until ``stop``. Once ``finish`` is set (the other sources are done, or this is a
        drain) it ends as soon as the spool is empty — or, unless ``until_empty``, when the
        circuit is open and nothing more can be delivered now.
        """
        s = self._settings
        flow = self._flow
        io = self._background.io
        chunk = s.batch_size
        idle_passes = 0
        last_expiry = 0.0
        while not stop.is_set():
            now = time.time()
            if not await io(self._lease.acquire, now):
                if finish.is_set():
                    return
                flow.backlog = False  # another process drains the backlog; deliver live events
                await flow.wait(stop, self._lease.ttl / 3)
                continue
            if now - last_expiry >= s.replay_poll:
                last_expiry = now
                expired = await io(self._spool.expire, now)
                if expired:
                    flow.forget(expired)
                    self._summary.expired += len(expired)
                    self._m.expired_events(len(expired))
            state = self._breaker.state()
            due = self._breaker.retry_at()
            if state.state == "forced_open" or (due is not None and now < due):
                if finish.is_set() and (not until_empty or state.state == "forced_open"):
                    return
                wait = (due - now) if due is not None else s.replay_poll
                await flow.wait(stop, min(wait, s.replay_poll))
                continue
            pushed, progressed = await self._replay_pass(chunk, stop, state.state == "half_open")
            if pushed == 0:
                if finish.is_set() and not flow.inflight and await io(self._lease.release, "spool"):
                    return  # the spool is empty and the lease given up, atomically
                if flow.backlog and not flow.inflight:
                    # Caught up: double-check that nothing arrived in between, then go live.
                    flow.backlog = flow.spilling = False
                    if await self._pending_entries():
                        flow.backlog = True
                        continue
                if finish.is_set() and not flow.inflight and not flow.backlog:
                    # Left: entries another process has in flight, or none. Nothing more to do here.
                    return
                await flow.wait(stop, s.replay_poll)
                continue
            # Wait for this pass's own events to settle (not for live traffic, which may never
            # pause) before the next one.
            while flow.from_replay and not stop.is_set():
                await flow.wait(stop, s.replay_poll)
            if progressed():
                idle_passes = 0
            else:
                if finish.is_set() and not until_empty:
                    # A whole pass delivered nothing (the service refuses, or the circuit keeps
                    # re-opening): a drain stops here; what is left stays in the spool.
                    return
                idle_passes += 1
                await flow.wait(stop, self._policy.get_delay(idle_passes, None))

    async def _pending_entries(self) -> bool:
        entries = await self._background.io(self._spool.read_batch, 0, self._settings.batch_size * 4)
        return any(not self._flow.busy(e.event.event_id) for _, e in entries)

    async def _replay_pass(self, chunk: int, stop: asyncio.Event, half_open: bool) -> tuple[int, Callable[[], bool]]:
        """Push every spooled event not already in flight, in chain order; returns
        (pushed, did-anything-get-acked)."""
        flow = self._flow
        acked_before = flow.acked_since_wake = 0
        cursor = 0
        pushed = 0
        while not stop.is_set():
            entries = await self._background.io(self._spool.read_batch, cursor, chunk * REPLAY_WINDOW)
            if not entries:
                break
            cursor = entries[-1][0]
            window = chain_order([e.event for _, e in entries if not flow.busy(e.event.event_id)])
            for i in range(0, len(window), chunk):
                events = window[i : i + chunk]
                await flow.credits.acquire(len(events))
                wanted = len(events)
                events = [ev for ev in events if not flow.busy(ev.event_id)]  # changed while we waited
                flow.credits.release(wanted - len(events))
                if not events:
                    continue
                flow.from_replay.update(ev.event_id for ev in events)
                self._summary.replayed += len(events)
                self._replay_stage.count(len(events), len(events))
                self._replay_stage.mark(len(events))
                self._counters.tally({"spool.replayed": len(events)})
                self._counters.flush_soon()
                flow.push(events)
                pushed += len(events)
                if half_open or stop.is_set():
                    break  # trials: one batch at a time until the circuit closes
            if half_open:
                break
        return pushed, lambda: flow.acked_since_wake > acked_before
