"""The chaos policy, pure: which phase is in force, and the fate of one request.

Plain code taking ``(schedule, elapsed seconds, rng)``; no clock, no I/O. Every :func:`decide`
draws exactly three numbers from ``rng``, so with a seed the same sequence of requests gets the
same decisions whatever they were.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from pattern_tracker.service.chaos_schedule import Phase, Schedule

__all__ = ["PASS", "Action", "Decision", "Position", "decide", "describe_faults", "locate"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where ``elapsed`` falls: phase ``index`` of cycle ``cycle``, active in [start, end) (seconds
    since the schedule started)."""

    index: int
    phase: Phase
    cycle: int
    start: float
    end: float


def locate(schedule: Schedule, elapsed: float) -> Position | None:
    """The phase active at ``elapsed`` seconds; None before 0 and after the last phase (no repeat).
    A phase covers [start, start + duration): a boundary instant belongs to the next phase."""
    if elapsed < 0 or not math.isfinite(elapsed):
        return None
    total = schedule.total
    cycle = 0
    t = elapsed
    if schedule.repeat:
        cycle = int(elapsed // total)
        t = elapsed - cycle * total
        if t >= total:  # float rounding at an exact multiple
            cycle, t = cycle + 1, 0.0
    elif elapsed >= total:
        return None
    offset = cycle * total
    for i, (start, phase) in enumerate(zip(schedule.starts(), schedule.phases)):
        end = start + phase.duration
        if t < end or i == len(schedule.phases) - 1:
            return Position(i, phase, cycle, offset + start, offset + end)
    return None  # pragma: no cover - the loop always returns


Action = Literal["pass", "error", "rate_limit", "reset", "garbage", "hang", "refused"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one lineage request. ``latency`` seconds are waited first (0 = none);
    ``slow_bps`` dribbles an untouched answer; ``phase_end`` is when a hang ends."""

    action: Action = "pass"
    phase: str | None = None
    status: int | None = None
    retry_after: int | None = None
    retry_after_date: bool = False
    latency: float = 0.0
    slow_bps: int | None = None
    garbage: Literal["truncated", "not_json"] | None = None
    phase_end: float | None = None


PASS = Decision()


def decide(schedule: Schedule, elapsed: float, rng: random.Random) -> Decision:
    """The fate of one request arriving ``elapsed`` seconds into the schedule. Draws exactly three
    numbers from ``rng`` (answer, latency, slow body) whatever the outcome."""
    u, u_latency, u_slow = rng.random(), rng.random(), rng.random()
    pos = locate(schedule, elapsed)
    if pos is None:
        return PASS
    f = pos.phase.faults
    name = pos.phase.name
    if f.outage is not None:
        return Decision(action=f.outage, phase=name, phase_end=pos.end)
    latency = f.latency.seconds if f.latency is not None and u_latency < f.latency.probability else 0.0
    acc = 0.0
    for kind, status, p in f.exclusive():
        if u < acc + p:
            if kind == "error":
                return Decision(action="error", phase=name, status=status, latency=latency)
            if kind == "rate_limit":
                assert f.rate_limit is not None
                return Decision(action="rate_limit", phase=name, status=429, latency=latency,
                                retry_after=f.rate_limit.retry_after, retry_after_date=f.rate_limit.retry_after_date)
            if kind == "garbage":
                within = (u - acc) / p
                return Decision(action="garbage", phase=name, latency=latency,
                                garbage="truncated" if within < 0.5 else "not_json")
            return Decision(action="reset", phase=name, latency=latency)
        acc += p
    slow = f.slow_body.bytes_per_second if f.slow_body is not None and u_slow < f.slow_body.probability else None
    if latency == 0.0 and slow is None:
        return Decision(phase=name)
    return Decision(phase=name, latency=latency, slow_bps=slow)


def describe_faults(phase: Phase) -> str:
    """``"errors 500 20%, 503 10%; latency 10% +1.5s"`` — the faults of a phase, for the log."""
    f = phase.faults
    if f.outage is not None:
        return f.outage

    def pct(p: float) -> str:
        return f"{p * 100:g}%"

    parts = []
    if f.errors is not None and f.errors.rates():
        parts.append("errors " + ", ".join(f"{s} {pct(p)}" for s, p in f.errors.rates().items()))
    if f.rate_limit is not None and f.rate_limit.probability > 0:
        form = "HTTP date" if f.rate_limit.retry_after_date else "seconds"
        parts.append(f"rate_limit {pct(f.rate_limit.probability)} (Retry-After {f.rate_limit.retry_after}s as {form})")
    if f.latency is not None and f.latency.probability > 0:
        parts.append(f"latency {pct(f.latency.probability)} +{f.latency.seconds:g}s")
    if f.reset > 0:
        parts.append(f"reset {pct(f.reset)}")
    if f.slow_body is not None and f.slow_body.probability > 0:
        parts.append(f"slow_body {pct(f.slow_body.probability)} at {f.slow_body.bytes_per_second} B/s")
    if f.garbage > 0:
        parts.append(f"garbage {pct(f.garbage)}")
    return "; ".join(parts) or "no faults"
