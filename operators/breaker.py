"""The circuit breaker's state machine. Plain functions over a state record: no Rx, no clock, no I/O.

States:
* ``closed``      — calls flow; failures are counted (consecutive, or a sliding window of outcomes);
* ``open``        — fail fast for ``recovery_timeout`` seconds after ``opened_at``;
* ``half_open``   — up to ``half_open_attempts`` trial calls; all succeed → closed, any fails → open;
* ``forced_open`` — an operator opened it: nothing flows until a reset;
* ``disabled``    — an operator turned it off: everything flows, nothing is counted.

The state record is what the store shares between processes (one write transaction per
transition), so a hook started while the circuit is open sees it open, and a half-open trial slot
is taken by one process only. A trial whose process died is given back after ``recovery_timeout``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

State = Literal["closed", "open", "half_open", "forced_open", "disabled"]
Mode = Literal["consecutive", "failure_rate"]


class BreakerSettings(msgspec.Struct, frozen=True, kw_only=True):
    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    half_open_attempts: int = 3
    mode: Mode = "consecutive"
    window_size: int = 20
    minimum_calls: int = 10
    failure_rate_threshold: float = 0.5


class BreakerState(msgspec.Struct, kw_only=True):
    state: State = "closed"
    failure_count: int = 0  # consecutive failures (mode consecutive) or failures in the window
    last_failure_time: float | None = None
    opened_at: float | None = None
    trip_count: int = 0
    # Outcomes of the last window_size calls, oldest first (1 = failure), mode failure_rate.
    window: list[int] = msgspec.field(default_factory=list)
    trials_started: int = 0
    trials_succeeded: int = 0
    half_open_at: float | None = None
    calls_not_permitted: int = 0
    changed_at: float = 0.0


Permit = Literal["call", "trial"]


def failure_rate(window: list[int]) -> float:
    return sum(window) / len(window) if window else 0.0


def retry_at(s: BreakerState, cfg: BreakerSettings) -> float | None:
    """When an open circuit will admit a trial (None unless open)."""
    if s.state != "open" or s.opened_at is None:
        return None
    return s.opened_at + cfg.recovery_timeout


def _open(s: BreakerState, now: float) -> BreakerState:
    return msgspec.structs.replace(
        s, state="open", opened_at=now, trip_count=s.trip_count + 1, trials_started=0, trials_succeeded=0,
        half_open_at=None, changed_at=now,
    )


def _close(s: BreakerState, now: float) -> BreakerState:
    return msgspec.structs.replace(
        s, state="closed", failure_count=0, window=[], opened_at=None, trials_started=0, trials_succeeded=0,
        half_open_at=None, changed_at=now,
    )


def acquire(s: BreakerState, cfg: BreakerSettings, now: float) -> tuple[Permit | None, BreakerState]:
    """May a call go now? Returns the permit (None = fail fast) and the new state."""
    if s.state in ("closed", "disabled"):
        return "call", s
    if s.state == "forced_open":
        return None, msgspec.structs.replace(s, calls_not_permitted=s.calls_not_permitted + 1)
    if s.state == "open":
        due = retry_at(s, cfg)
        if due is None or now < due:
            return None, msgspec.structs.replace(s, calls_not_permitted=s.calls_not_permitted + 1)
        s = msgspec.structs.replace(s, state="half_open", half_open_at=now, trials_started=0, trials_succeeded=0, changed_at=now)
    # half_open
    if s.half_open_at is not None and now - s.half_open_at >= cfg.recovery_timeout and s.trials_started > s.trials_succeeded:
        # Trials that never reported (their process died): give the slots back.
        s = msgspec.structs.replace(s, half_open_at=now, trials_started=s.trials_succeeded)
    if s.trials_started >= cfg.half_open_attempts:
        return None, msgspec.structs.replace(s, calls_not_permitted=s.calls_not_permitted + 1)
    return "trial", msgspec.structs.replace(s, trials_started=s.trials_started + 1)


def record(s: BreakerState, cfg: BreakerSettings, now: float, permit: Permit, success: bool) -> BreakerState:
    """The outcome of a call made under ``permit``."""
    if s.state == "disabled":
        return s
    if permit == "trial":
        if s.state != "half_open":
            return s  # a late trial result after a reset or a re-open: nothing to learn
        if not success:
            return msgspec.structs.replace(_open(s, now), last_failure_time=now)
        if s.trials_succeeded >= s.trials_started:
            return s  # a trial whose slot was given back reporting late: count only trials started
        succeeded = s.trials_succeeded + 1
        if succeeded >= cfg.half_open_attempts:
            return _close(s, now)
        return msgspec.structs.replace(s, trials_succeeded=succeeded)
    if s.state != "closed":
        return msgspec.structs.replace(s, last_failure_time=now) if not success else s
    if cfg.mode == "consecutive":
        if success:
            return s if s.failure_count == 0 else msgspec.structs.replace(s, failure_count=0)
        s = msgspec.structs.replace(s, failure_count=s.failure_count + 1, last_failure_time=now)
        return _open(s, now) if s.failure_count >= cfg.failure_threshold else s
    window = (s.window + [0 if success else 1])[-cfg.window_size :]
    s = msgspec.structs.replace(
        s, window=window, failure_count=sum(window), last_failure_time=s.last_failure_time if success else now
    )
    if len(window) >= cfg.minimum_calls and failure_rate(window) >= cfg.failure_rate_threshold:
        return _open(s, now)
    return s


def reset(s: BreakerState, now: float) -> BreakerState:
    """Operator reset: closed, counts cleared (trip count and history kept)."""
    return _close(msgspec.structs.replace(s, calls_not_permitted=s.calls_not_permitted), now)


def force_open(s: BreakerState, now: float) -> BreakerState:
    return msgspec.structs.replace(s, state="forced_open", opened_at=now, trip_count=s.trip_count + 1, changed_at=now)


def disable(s: BreakerState, now: float) -> BreakerState:
    return msgspec.structs.replace(s, state="disabled", changed_at=now)
