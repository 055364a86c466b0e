"""The retry and circuit_gate operators on Rx virtual time: exact attempt times, no real waiting.

TestScheduler: 1 tick = 1 second for relative timers (``rx.timer(1.5)`` fires 1.5 ticks later) and
``scheduler.clock`` is the current virtual time as a float, which also serves as the breaker's clock.
``start()`` subscribes at 200, so every scenario here starts at T0 = 300.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
import reactivex as rx
import reactivex.operators as ops
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler

from pattern_tracker.operators.backoff import ExponentialBackoff
from pattern_tracker.operators.breaker import BreakerSettings, Permit
from pattern_tracker.operators.circuit_gate import CircuitGate, circuit_gate
from pattern_tracker.operators.retry import Attempted, retry
from pattern_tracker.operators.spill import Spill
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.core.store import Store
from pattern_tracker.model.outcome import DELIVERED, Outcome

T0 = 300.0
END = 10_000.0

OK = DELIVERED
E503 = Outcome(status="retryable", error_class="http_503", http_status=503)
AUTH = Outcome(status="retryable", error_class="auth", http_status=401)
BAD = Outcome(status="permanent", error_class="validation", http_status=422)


def at(t: float) -> Any:
    """A virtual time T0 + t (datetime conversion rounds to the microsecond)."""
    return pytest.approx(T0 + t, abs=1e-6)


def test_virtual_time_units() -> None:
    # The premise of every expected time below.
    s = TestScheduler()
    seen: list[float] = []
    s.start(lambda: rx.timer(1.5, scheduler=s).pipe(ops.do_action(lambda _: seen.append(s.clock))))
    assert seen == [201.5]


class ScriptedCall:
    """The delivery call: ``script(n, events)`` gives the n-th call's outcomes (n from 1).

    Records the virtual time and the events of every call; ``latency`` models the round trip.
    """

    def __init__(
        self,
        scheduler: TestScheduler,
        script: Callable[[int, list[Any]], list[Outcome]],
        latency: float = 0.0,
    ) -> None:
        self.scheduler = scheduler
        self.script = script
        self.latency = latency
        self.calls: list[tuple[float, list[Any]]] = []

    def __call__(self, events: list[Any]) -> Observable[list[Outcome]]:
        self.calls.append((self.scheduler.clock, list(events)))
        outcomes = self.script(len(self.calls), list(events))
        assert len(outcomes) == len(events)
        if self.latency:
            return rx.timer(self.latency, scheduler=self.scheduler).pipe(ops.map(lambda _: outcomes))
        return rx.of(outcomes)

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.calls]

    @property
    def batches(self) -> list[list[Any]]:
        return [b for _, b in self.calls]


def per_event(table: dict[Any, Sequence[Outcome]]) -> Callable[[int, list[Any]], list[Outcome]]:
    """Outcome of an event on its k-th call (the last one repeats)."""
    seen: dict[Any, int] = {}

    def script(n: int, events: list[Any]) -> list[Outcome]:
        out = []
        for ev in events:
            k = seen.get(ev, 0)
            seen[ev] = k + 1
            seq = table[ev]
            out.append(seq[min(k, len(seq) - 1)])
        return out

    return script


class FakeGate:
    """The retry operator's gate protocol: scripted permits for re-attempts, records what it is told."""

    def __init__(self, scheduler: TestScheduler, permits: Iterable[Permit | None] = ()) -> None:
        self.scheduler = scheduler
        self._permits = iter(permits)
        self.acquired: list[float] = []
        self.recorded: list[tuple[float, Permit, list[Outcome]]] = []

    def acquire(self) -> Permit | None:
        self.acquired.append(self.scheduler.clock)
        return next(self._permits, "call")

    def record(self, permit: Permit, outcomes: Sequence[Outcome]) -> None:
        self.recorded.append((self.scheduler.clock, permit, list(outcomes)))


def run_retry(
    scheduler: TestScheduler,
    call: ScriptedCall,
    policy: Any,
    gate: Any,
    batch: list[Any],
    permit: Permit = "call",
) -> list[tuple[float, Any]]:
    """One batch at T0 through ``retry``; returns [(time, item)] with 'C' for completion."""
    # The source completes with its item: the completion time is then the batch's own.
    xs = scheduler.create_hot_observable(ReactiveTest.on_next(T0, (batch, permit)), ReactiveTest.on_completed(T0))
    res = scheduler.start(
        lambda: xs.pipe(ops.map(retry(call, policy, gate, scheduler)), ops.merge_all()), disposed=END
    )
    out: list[tuple[float, Any]] = []
    for m in res.messages:
        if m.value.kind == "N":
            out.append((m.time, m.value.value))
        elif m.value.kind == "C":
            out.append((m.time, "C"))
        else:
            raise AssertionError(f"unexpected error {m.value}")
    return out


def attempts(items: list[tuple[float, Any]]) -> list[Attempted]:
    return [v for _, v in items if isinstance(v, Attempted)]


def spills(items: list[tuple[float, Any]]) -> list[tuple[float, Spill]]:
    return [(t, v) for t, v in items if isinstance(v, Spill)]


def policy(max_attempts: int = 4, base: float = 1.0, max_delay: float = 30.0, jitter: float = 0.0,
           rand: Callable[[], float] | None = None) -> ExponentialBackoff:
    kwargs = {"rand": rand} if rand is not None else {}
    return ExponentialBackoff(max_attempts=max_attempts, base_delay=base, max_delay=max_delay,
                              jitter_factor=jitter, **kwargs)


# --------------------------------------------------------------------------------------------
# retry
# --------------------------------------------------------------------------------------------


def test_attempt_times_without_jitter_and_exhaustion() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, lambda n, evs: [E503] * len(evs))
    gate = FakeGate(s)
    items = run_retry(s, call, policy(max_attempts=4), gate, ["a", "b"])
    assert call.times == [at(0), at(1), at(3), at(7)]
    assert call.batches == [["a", "b"]] * 4
    assert [(a.attempt, a.permit, a.events) for a in attempts(items)] == [(n, "call", ["a", "b"]) for n in (1, 2, 3, 4)]
    assert [t for t, v in items if isinstance(v, Attempted)] == [at(0), at(1), at(3), at(7)]
    assert spills(items) == [(at(7), Spill(["a", "b"], "retries_exhausted"))]
    assert items[-1] == (at(7), "C")
    assert gate.acquired == [at(1), at(3), at(7)]  # asked before every re-attempt, not before the first


def test_attempt_times_with_injected_jitter() -> None:
    s = TestScheduler()
    draws = iter([0.5, 0.25, 0.75])
    call = ScriptedCall(s, lambda n, evs: [E503] * len(evs))
    items = run_retry(s, call, policy(max_attempts=4, jitter=0.2, rand=lambda: next(draws)), FakeGate(s), ["a"])
    # Delays 1·(1+0.5·0.2)=1.1, 2·(1+0.25·0.2)=2.1, 4·(1+0.75·0.2)=4.6.
    assert call.times == [at(0), at(1.1), at(3.2), at(7.8)]
    assert spills(items) == [(at(7.8), Spill(["a"], "retries_exhausted"))]


def test_delay_counts_from_the_answer_with_latency() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, lambda n, evs: [E503] * len(evs), latency=0.5)
    items = run_retry(s, call, policy(max_attempts=3), FakeGate(s), ["a"])
    assert call.times == [at(0), at(1.5), at(4.0)]
    assert [t for t, v in items if isinstance(v, Attempted)] == [at(0.5), at(2.0), at(4.5)]
    assert spills(items) == [(at(4.5), Spill(["a"], "retries_exhausted"))]


def test_only_failed_events_are_resent() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, per_event({"e1": [OK], "e2": [E503, E503, OK], "e3": [OK]}))
    gate = FakeGate(s)
    items = run_retry(s, call, policy(max_attempts=4), gate, ["e1", "e2", "e3"])
    assert call.batches == [["e1", "e2", "e3"], ["e2"], ["e2"]]
    assert call.times == [at(0), at(1), at(3)]
    assert [(a.attempt, a.events, a.outcomes) for a in attempts(items)] == [
        (1, ["e1", "e2", "e3"], [OK, E503, OK]),
        (2, ["e2"], [E503]),
        (3, ["e2"], [OK]),
    ]
    assert spills(items) == []
    assert items[-1] == (at(3), "C")


def test_exhausted_spill_holds_exactly_the_still_failing_events() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, per_event({"e1": [OK], "e2": [E503], "e3": [E503, OK], "e4": [E503, E503, E503, E503]}))
    items = run_retry(s, call, policy(max_attempts=4), FakeGate(s), ["e1", "e2", "e3", "e4"])
    assert call.batches == [["e1", "e2", "e3", "e4"], ["e2", "e3", "e4"], ["e2", "e4"], ["e2", "e4"]]
    assert spills(items) == [(at(7), Spill(["e2", "e4"], "retries_exhausted"))]


def test_not_retryable_outcome_is_spilled_at_once() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, lambda n, evs: [AUTH] * len(evs))
    gate = FakeGate(s)
    items = run_retry(s, call, policy(max_attempts=4), gate, ["a", "b"])
    assert call.times == [at(0)]
    assert [type(v).__name__ for _, v in items] == ["Attempted", "Spill", "str"]
    assert spills(items) == [(at(0), Spill(["a", "b"], "not_retryable"))]
    assert gate.acquired == []


def test_mixed_batch_spills_the_not_retryable_and_retries_the_rest() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, per_event({"x": [AUTH], "y": [E503, OK]}))
    items = run_retry(s, call, policy(max_attempts=4), FakeGate(s), ["x", "y"])
    assert call.batches == [["x", "y"], ["y"]]
    assert spills(items) == [(at(0), Spill(["x"], "not_retryable"))]
    assert items[-1] == (at(1), "C")


def test_permanent_outcome_is_neither_retried_nor_spilled() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, per_event({"p": [BAD], "q": [OK]}))
    items = run_retry(s, call, policy(max_attempts=4), FakeGate(s), ["p", "q"])
    assert call.times == [at(0)]
    assert spills(items) == []
    assert [(a.events, a.outcomes) for a in attempts(items)] == [(["p", "q"], [BAD, OK])]
    assert items[-1] == (at(0), "C")


def test_retry_after_is_the_floor_of_the_next_attempt() -> None:
    s = TestScheduler()
    limited = Outcome(status="retryable", error_class="http_429", http_status=429, retry_after=2.0)
    call = ScriptedCall(s, per_event({"a": [limited, OK], "b": [E503, OK]}))
    items = run_retry(s, call, policy(max_attempts=4, base=0.1), FakeGate(s), ["a", "b"])
    assert call.times == [at(0), at(2)]  # not 0.1: the server asked for 2 s (the worst of the batch)
    assert call.batches == [["a", "b"], ["a", "b"]]
    assert spills(items) == []


def test_retry_after_above_max_delay_is_clamped() -> None:
    s = TestScheduler()
    limited = Outcome(status="retryable", error_class="http_429", retry_after=100.0)
    call = ScriptedCall(s, per_event({"a": [limited, OK]}))
    run_retry(s, call, policy(max_attempts=4, base=0.1, max_delay=30.0), FakeGate(s), ["a"])
    assert call.times == [at(0), at(30)]


def test_gate_refusing_a_reattempt_spills_circuit_open() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, per_event({"a": [OK], "b": [E503], "c": [E503]}))
    gate = FakeGate(s, permits=[None])
    items = run_retry(s, call, policy(max_attempts=4), gate, ["a", "b", "c"])
    assert call.times == [at(0)]
    assert gate.acquired == [at(1)]
    assert spills(items) == [(at(1), Spill(["b", "c"], "circuit_open"))]
    assert items[-1] == (at(1), "C")
    assert len(gate.recorded) == 1


def test_gate_is_told_every_attempt_with_its_permit_and_outcomes() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, per_event({"a": [OK], "b": [E503, E503, OK]}), latency=0.25)
    gate = FakeGate(s, permits=["trial", "call"])
    run_retry(s, call, policy(max_attempts=4), gate, ["a", "b"], permit="trial")
    assert gate.recorded == [
        (at(0.25), "trial", [OK, E503]),
        (at(1.5), "trial", [E503]),
        (at(3.75), "call", [OK]),
    ]
    assert gate.acquired == [at(1.25), at(3.5)]


def test_batches_are_retried_independently() -> None:
    s = TestScheduler()
    call = ScriptedCall(s, per_event({"a": [E503, OK], "b": [E503, E503, OK]}))
    xs = s.create_hot_observable(
        ReactiveTest.on_next(T0, (["a"], "call")), ReactiveTest.on_next(T0 + 0.5, (["b"], "call")),
        ReactiveTest.on_completed(T0 + 1),
    )
    res = s.start(lambda: xs.pipe(ops.map(retry(call, policy(), FakeGate(s), s)), ops.merge_all()), disposed=END)
    assert call.calls == [(at(0), ["a"]), (at(0.5), ["b"]), (at(1), ["a"]), (at(1.5), ["b"]), (at(3.5), ["b"])]
    assert res.messages[-1].time == at(3.5) and res.messages[-1].value.kind == "C"


# --------------------------------------------------------------------------------------------
# circuit_gate + retry + the real breaker (SharedBreaker in LMDB) on a virtual clock
# --------------------------------------------------------------------------------------------

BREAKER = BreakerSettings(failure_threshold=5, recovery_timeout=60.0, half_open_attempts=3)


class Pipeline:
    """batches ─► circuit_gate ─► retry(max_attempts=1) with a breaker whose clock is virtual time."""

    def __init__(self, store: Store, fails_until: float, latency: float = 0.0) -> None:
        self.s = TestScheduler()
        self.breaker = SharedBreaker(store, BREAKER, clock=lambda: self.s.clock)
        self.transitions: list[tuple[float, str, str]] = []
        self.breaker.on_transition = lambda old, new: self.transitions.append((self.s.clock - T0, old, new))
        self.rejected: list[tuple[float, list[Any]]] = []
        self.call = ScriptedCall(
            self.s, lambda n, evs: [E503 if self.s.clock < T0 + fails_until else OK] * len(evs), latency=latency
        )

    def run(self, batch_times: Sequence[float]) -> list[tuple[float, Any]]:
        s = self.s
        gate = CircuitGate(self.breaker)
        msgs = [ReactiveTest.on_next(T0 + t, [f"ev@{t:g}"]) for t in batch_times]
        xs = s.create_hot_observable(*msgs, ReactiveTest.on_completed(T0 + max(batch_times) + 1))
        res = s.start(
            lambda: xs.pipe(
                circuit_gate(gate, lambda batch: self.rejected.append((s.clock - T0, batch))),
                ops.map(retry(self.call, policy(max_attempts=1), gate, s)),
                ops.merge_all(),
            ),
            disposed=END,
        )
        assert not [m for m in res.messages if m.value.kind == "E"]
        return [(m.time - T0, m.value.value) for m in res.messages if m.value.kind == "N"]

    @property
    def call_times(self) -> list[float]:
        return [pytest.approx(t - T0, abs=1e-6) for t in self.call.times]


def test_breaker_opens_rejects_trials_and_closes_on_virtual_time(store: Store) -> None:
    p = Pipeline(store, fails_until=95.0)
    batch_times = [10.0 * i for i in range(15)]  # t = 0, 10, …, 140
    items = p.run(batch_times)
    # 5 failing calls (t=0…40) open the circuit at t=40; it refuses until 40 + 60 = 100.
    assert p.call_times == [0, 10, 20, 30, 40, 100, 110, 120, 130, 140]
    assert p.rejected == [(t, [f"ev@{t:g}"]) for t in (50.0, 60.0, 70.0, 80.0, 90.0)]
    assert p.transitions == [(40.0, "closed", "open"), (100.0, "open", "half_open"), (120.0, "half_open", "closed")]
    permits = [(t, v.permit) for t, v in items if isinstance(v, Attempted)]
    assert permits == [(0, "call"), (10, "call"), (20, "call"), (30, "call"), (40, "call"),
                       (100, "trial"), (110, "trial"), (120, "trial"), (130, "call"), (140, "call")]
    # Each failed batch is spilled once (max_attempts=1 gives up at once); no re-attempt asks the gate.
    assert [(t, v.reason) for t, v in items if isinstance(v, Spill)] == [(t, "retries_exhausted") for t in (0, 10, 20, 30, 40)]
    final = p.breaker.state()
    assert final.state == "closed" and final.trip_count == 1 and final.calls_not_permitted == 5


def test_a_failed_trial_reopens_on_virtual_time(store: Store) -> None:
    p = Pipeline(store, fails_until=105.0)
    p.run([10.0 * i for i in range(20)])  # t = 0 … 190
    # The trial at t=100 fails: open again until 160; trials at 160, 170, 180 succeed; 190 is a call.
    assert p.call_times == [0, 10, 20, 30, 40, 100, 160, 170, 180, 190]
    assert [t for t, _ in p.rejected] == [50, 60, 70, 80, 90, 110, 120, 130, 140, 150]
    assert p.transitions == [
        (40.0, "closed", "open"), (100.0, "open", "half_open"), (100.0, "half_open", "open"),
        (160.0, "open", "half_open"), (180.0, "half_open", "closed"),
    ]
    assert p.breaker.state().trip_count == 2


def test_half_open_admits_three_concurrent_trials_with_latency(store: Store) -> None:
    # Calls take 5 s: failures at t=0…4 are recorded at 5…9, so the circuit opens at t=9 (retry at 69).
    p = Pipeline(store, fails_until=60.0, latency=5.0)
    items = p.run([0, 1, 2, 3, 4, 20, 68, 69, 70, 71, 72, 73, 75, 77])
    assert p.transitions[0] == (9.0, "closed", "open")
    assert p.call_times == [0, 1, 2, 3, 4, 69, 70, 71, 77]
    assert [t for t, _ in p.rejected] == [20, 68, 72, 73, 75]  # the 4th and later concurrent trials are refused
    # The trials answer at 74, 75, 76: closed at 76 (after the batch at 75 was refused); 77 is a call.
    assert p.transitions[1:] == [(69.0, "open", "half_open"), (76.0, "half_open", "closed")]
    assert [(t, v.permit) for t, v in items if isinstance(v, Attempted)][-4:] == [
        (74, "trial"), (75, "trial"), (76, "trial"), (82, "call")]
