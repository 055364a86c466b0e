"""Deliver the spool's backlog now: the one drain behind ``pattern-tracker drain``, ``dlq replay``
and ``PatternTracker.drain``. Prints nothing: each face words the outcome its own way.

A drain defers to a drainer that already holds the drain lease (another process delivers the
events), and says why events remain when some do: interrupted, the circuit is open, or the
service refused them for now.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pattern_tracker.usecases.status import circuit_view

# Follows a running drain: (events in the spool at start, events settled so far, set when it ends).
Watcher = Callable[[int, Callable[[], int], asyncio.Event], Awaitable[None]]

UNAVAILABLE = ("open", "forced_open", "half_open")


@dataclass(frozen=True)
class DrainOutcome:
    """What one drain did. ``summary`` is None when another process held the lease at start."""

    status: str  # "empty" | "pending" | "busy"
    summary: Any = None  # runtime.RunSummary
    holder: Any = None  # core.lease.Lease of the other drainer (status "busy")
    reason: str | None = None  # why events remain: "interrupted" | "circuit_open" | "not_delivered"
    circuit: dict[str, Any] | None = None  # usecases.status.circuit_view after the drain
    interrupted: bool = False


def other_drainer(store: Any, now: float) -> Any:
    """The live drain lease of another process (pid and host), or None."""
    from pattern_tracker.core.lease import DrainLease

    holder = DrainLease(store).holder(now)
    if holder is not None and (holder.pid, holder.host) != (os.getpid(), socket.gethostname()):
        return holder
    return None


async def drain_spool(cfg: Any, store: Any, *, until_empty: bool = False, stop: asyncio.Event | None = None,
                      telemetry: Callable[[], Any] | None = None, watch: Watcher | None = None) -> DrainOutcome:
    """Run the pipeline in drain mode until the spool is empty (or the circuit stops it).

    ``stop`` ends it early (``interrupted``); ``telemetry`` gives the pipeline's providers, asked
    only when the drain runs (not when another process holds the lease); ``watch`` follows it
    (the CLI's progress bar): done = delivered + already there + dead-lettered.
    """
    from pattern_tracker.composition import breaker_for, build_pipeline

    holder = other_drainer(store, time.time())
    if holder is not None:
        return DrainOutcome(status="busy", holder=holder)
    stop = stop if stop is not None else asyncio.Event()
    pipeline = build_pipeline(cfg, store, telemetry=telemetry() if telemetry is not None else None)
    ended = asyncio.Event()

    def done() -> int:
        s = pipeline.summary
        return int(s.delivered + s.already_existed + s.dead_lettered)

    follow = asyncio.create_task(watch(pipeline.spool.size(), done, ended)) if watch is not None else None
    try:
        summary = await pipeline.run([], stop, drain=True, until_empty=until_empty)
    finally:
        if follow is not None:
            ended.set()
            await asyncio.gather(follow, return_exceptions=True)
    interrupted = stop.is_set()
    now = time.time()
    circuit = circuit_view(breaker_for(cfg, store), now)
    if summary.left_in_spool == 0:
        return DrainOutcome(status="empty", summary=summary, circuit=circuit, interrupted=interrupted)
    other = other_drainer(store, now)
    if summary.replayed == 0 and other is not None:
        # It took the lease between our check and our start: it delivers them.
        return DrainOutcome(status="busy", summary=summary, holder=other, circuit=circuit, interrupted=interrupted)
    if interrupted:
        reason = "interrupted"
    elif circuit["state"] in UNAVAILABLE:
        reason = "circuit_open"
    else:
        reason = "not_delivered"
    return DrainOutcome(status="pending", summary=summary, reason=reason, circuit=circuit, interrupted=interrupted)
