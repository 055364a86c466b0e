"""The per-batch delivery path: its guarantees in a real pipeline (real LMDB spool), and its
coroutine agreeing with the Rx operators it stands for.

* an event leaves the spool only after the sink's delivery of it returned (acknowledged);
* a batch that fails leaves every one of its events in the spool (live events stay there, an
  archive's events are spooled by the spill), and a partly failed batch exactly its failed ones;
* ``operators.delivery.deliver_batch`` takes the same steps, at the same times, as
  ``circuit_gate`` ─► ``retry`` in Rx virtual time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import reactivex as rx
import reactivex.operators as ops
from pattern_tracker.core.store import Store
from pattern_tracker.model.events import PatternEvent, build_event
from pattern_tracker.model.outcome import DELIVERED, Outcome, ServiceHealth
from pattern_tracker.operators.backoff import ExponentialBackoff
from pattern_tracker.operators.breaker import Permit
from pattern_tracker.operators.circuit_gate import circuit_gate
from pattern_tracker.operators.delivery import deliver_batch
from pattern_tracker.operators.retry import Attempted, retry
from pattern_tracker.operators.spill import Spill
from pattern_tracker.runtime import Feed, Pipeline, RuntimeSettings
from pattern_tracker.state.spool import Spool
from pattern_tracker.telemetry import Telemetry
from reactivex.testing import ReactiveTest, TestScheduler

from tests.clitools import async_wait_for

E503 = Outcome(status="retryable", error_class="http_503", http_status=503)
AUTH = Outcome(status="retryable", error_class="auth", http_status=401)
BAD = Outcome(status="permanent", error_class="validation", http_status=422)


def events(n: int, tag: str) -> list[PatternEvent]:
    return [build_event(file_path=f"/{tag}/f{i}.py", code=f"x = {i}\n", version=1, parent_pattern_id=None,
                        source="stdin", occurred_at=0) for i in range(n)]


class ScriptedSink:
    """Outcomes from ``answer(event, call number)``; calls from ``hold_from`` on wait for ``hold``."""

    name = "scripted"

    def __init__(self, answer: Callable[[PatternEvent, int], Outcome], hold: asyncio.Event | None = None,
                 hold_from: int = 1) -> None:
        self.answer = answer
        self.hold = hold
        self.hold_from = hold_from
        self.calls: list[list[str]] = []

    async def start(self) -> None:
        return None

    async def deliver(self, evs: Sequence[PatternEvent]) -> list[Outcome]:
        self.calls.append([ev.event_id for ev in evs])
        n = len(self.calls)
        if self.hold is not None and n >= self.hold_from:
            await self.hold.wait()
        return [self.answer(ev, n) for ev in evs]

    async def health(self) -> ServiceHealth:
        return ServiceHealth(available=True, status="healthy")

    async def close(self) -> None:
        return None


def pipeline(store: Store, sink: Any, max_attempts: int = 2) -> Pipeline:
    return Pipeline(store, sink, Telemetry.disabled(), RuntimeSettings(batch_size=10, batch_linger=0.01),
                    policy=ExponentialBackoff(max_attempts=max_attempts, base_delay=0.0, max_delay=0.01))


def spooled_ids(store: Store) -> set[str]:
    return {entry.event.event_id for _, entry in Spool(store).read_batch(0, 1000)}


@pytest.mark.parametrize("held", [1, 2], ids=["first attempt held", "failed, then the retry held"])
async def test_an_event_leaves_the_spool_only_after_its_delivery_returned(store: Store, held: int) -> None:
    """Held mid-delivery (the first attempt, or the retry after a failed one): the whole batch
    is in the spool; once the delivery returned acknowledged, none of it."""
    hold = asyncio.Event()
    sink = ScriptedSink(lambda ev, n: DELIVERED if n >= held else E503, hold, hold_from=held)
    p = pipeline(store, sink, max_attempts=3)
    batch = events(10, "held")
    ids = {ev.event_id for ev in batch}
    while_held: list[set[str]] = []

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        await feed.events(batch)
        await async_wait_for(lambda: len(sink.calls) == held, what="the held attempt")
        # The store thread runs writes in order: this read sees every write settlement asked for so far.
        while_held.append(await p._background.io(spooled_ids, store))
        hold.set()

    summary = await p.run([source], asyncio.Event())
    assert sink.calls == [[ev.event_id for ev in batch]] * held
    assert while_held == [ids]  # mid-delivery: the whole batch still in the spool
    assert (summary.delivered, summary.left_in_spool) == (10, 0)
    assert spooled_ids(store) == set()  # delivered: gone


@pytest.mark.parametrize("kind", ["retries_exhausted", "not_retryable", "sink_raises"])
@pytest.mark.parametrize("durable", [False, True], ids=["live", "archive"])
async def test_a_failed_batch_leaves_every_one_of_its_events_in_the_spool(store: Store, kind: str, durable: bool) -> None:
    if kind == "sink_raises":
        def answer(ev: PatternEvent, n: int) -> Outcome:
            raise RuntimeError("sink bug")
    else:
        outcome = E503 if kind == "retries_exhausted" else AUTH

        def answer(ev: PatternEvent, n: int) -> Outcome:
            return outcome

    sink = ScriptedSink(answer)
    p = pipeline(store, sink)
    batch = events(10, kind)

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        if durable:
            await feed.archived(batch)  # no spool entry on the way in: the spill must write one
        else:
            await feed.events(batch)

    summary = await p.run([source], asyncio.Event())
    assert sink.calls[0] == [ev.event_id for ev in batch]
    assert (summary.delivered, summary.dead_lettered, summary.not_kept) == (0, 0, 0)
    assert summary.left_in_spool == 10
    assert spooled_ids(store) == {ev.event_id for ev in batch}


async def test_a_partly_failed_batch_leaves_exactly_its_failed_events(store: Store) -> None:
    batch = events(10, "mixed")
    failing = {ev.event_id for ev in batch[1::2]}
    invalid = batch[5].event_id
    failing.discard(invalid)
    sink = ScriptedSink(lambda ev, n: BAD if ev.event_id == invalid else AUTH if ev.event_id in failing else DELIVERED)
    p = pipeline(store, sink)

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        await feed.events(batch)

    summary = await p.run([source], asyncio.Event())
    assert (summary.delivered, summary.dead_lettered, summary.left_in_spool) == (5, 1, 4)
    assert spooled_ids(store) == failing
    assert [letter.event.event_id for _, letter in p.dead_letters.list()] == [invalid]


# -- the coroutine and the Rx operators take the same steps ------------------------------------

T0 = 300.0


class Gate:
    """Scripted permits (then "call"), the clock of each question, and every record."""

    def __init__(self, clock: Callable[[], float], permits: Sequence[Permit | None]) -> None:
        self.clock = clock
        self.permits = iter(permits)
        self.acquired: list[float] = []
        self.recorded: list[tuple[float, Permit, list[Outcome]]] = []

    def acquire(self) -> Permit | None:
        self.acquired.append(round(self.clock() - T0, 6))
        return next(self.permits, "call")

    def record(self, permit: Permit, outcomes: Sequence[Outcome]) -> None:
        self.recorded.append((round(self.clock() - T0, 6), permit, list(outcomes)))


def per_event(table: dict[str, Sequence[Outcome]]) -> Callable[[list[str]], list[Outcome]]:
    seen: dict[str, int] = {}

    def script(evs: list[str]) -> list[Outcome]:
        out = []
        for ev in evs:
            k = seen.get(ev, 0)
            seen[ev] = k + 1
            out.append(table[ev][min(k, len(table[ev]) - 1)])
        return out

    return script


def _describe(step: Attempted | Spill) -> tuple[Any, ...]:
    if isinstance(step, Spill):
        return ("spill", list(step.events), step.reason)
    return ("attempt", step.attempt, step.permit, list(step.events), list(step.outcomes))


def through_rx(table: dict[str, Sequence[Outcome]], permits: Sequence[Permit | None], batch: list[str],
               max_attempts: int, base: float) -> tuple[list[tuple[float, Any]], list[float], Gate]:
    s = TestScheduler()
    gate = Gate(lambda: s.clock, permits)
    script = per_event(table)
    calls: list[float] = []
    rejected: list[tuple[float, Any]] = []

    def call(evs: list[str]) -> rx.Observable[list[Outcome]]:
        calls.append(round(s.clock - T0, 6))
        return rx.of(script(evs))

    pol = ExponentialBackoff(max_attempts=max_attempts, base_delay=base, max_delay=30.0, jitter_factor=0.0)
    xs = s.create_hot_observable(ReactiveTest.on_next(T0, batch), ReactiveTest.on_completed(T0))
    res = s.start(lambda: xs.pipe(
        circuit_gate(gate, lambda b: rejected.append((round(s.clock - T0, 6), ("rejected", list(b))))),
        ops.map(retry(call, pol, gate, s)), ops.merge_all()), disposed=10_000.0)
    steps = [(round(m.time - T0, 6), _describe(m.value.value)) for m in res.messages if m.value.kind == "N"]
    return rejected + steps, calls, gate


def through_coroutine(table: dict[str, Sequence[Outcome]], permits: Sequence[Permit | None], batch: list[str],
                      max_attempts: int, base: float) -> tuple[list[tuple[float, Any]], list[float], Gate]:
    clock = [T0]
    gate = Gate(lambda: clock[0], permits)
    script = per_event(table)
    calls: list[float] = []
    steps: list[tuple[float, Any]] = []

    async def call(evs: list[str]) -> list[Outcome]:
        calls.append(round(clock[0] - T0, 6))
        return script(evs)

    async def sleep(delay: float) -> None:
        clock[0] += delay

    pol = ExponentialBackoff(max_attempts=max_attempts, base_delay=base, max_delay=30.0, jitter_factor=0.0)
    asyncio.run(deliver_batch(batch, call, pol, gate, lambda step: steps.append((round(clock[0] - T0, 6), _describe(step))),
                              lambda b: steps.append((round(clock[0] - T0, 6), ("rejected", list(b)))), sleep=sleep))
    return steps, calls, gate


LIMITED = Outcome(status="retryable", error_class="http_429", http_status=429, retry_after=2.0)
SCENARIOS = {
    "exhausted": ({"a": [E503], "b": [E503]}, [], 4, 1.0),
    "only failed resent": ({"e1": [DELIVERED], "e2": [E503, E503, DELIVERED], "e3": [DELIVERED]}, [], 4, 1.0),
    "mixed not retryable": ({"x": [AUTH], "y": [E503, DELIVERED]}, [], 4, 1.0),
    "permanent": ({"p": [BAD], "q": [DELIVERED]}, [], 4, 1.0),
    "retry-after floor": ({"a": [LIMITED, DELIVERED], "b": [E503, DELIVERED]}, [], 4, 0.1),
    "gate refuses a re-attempt": ({"a": [DELIVERED], "b": [E503], "c": [E503]}, ["call", None], 4, 1.0),
    "gate refuses the batch": ({"a": [DELIVERED]}, [None], 4, 1.0),
    "trials": ({"a": [DELIVERED], "b": [E503, E503, DELIVERED]}, ["trial", "trial", "call"], 4, 1.0),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_coroutine_takes_the_steps_of_the_rx_operators(name: str) -> None:
    table, permits, max_attempts, base = SCENARIOS[name]
    batch = list(table)
    rx_steps, rx_calls, rx_gate = through_rx(table, permits, batch, max_attempts, base)
    co_steps, co_calls, co_gate = through_coroutine(table, permits, batch, max_attempts, base)
    assert rx_steps and co_steps == rx_steps
    assert co_calls == rx_calls
    assert (co_gate.acquired, co_gate.recorded) == (rx_gate.acquired, rx_gate.recorded)


class PreparingSink(ScriptedSink):
    """Prepares a token per batch (as HttpSink encodes its body) and records what each call got."""

    def __init__(self, answer: Callable[[PatternEvent, int], Outcome]) -> None:
        super().__init__(answer)
        self.prepared_for: list[list[str]] = []
        self.given: list[Any] = []

    def prepare(self, evs: Sequence[PatternEvent]) -> tuple[str, ...]:
        self.prepared_for.append([ev.event_id for ev in evs])
        return tuple(ev.event_id for ev in evs)

    async def deliver(self, evs: Sequence[PatternEvent], prepared: Any = None) -> list[Outcome]:
        assert prepared is None or prepared == tuple(ev.event_id for ev in evs)  # only ever for exactly these
        self.given.append(prepared)
        return await super().deliver(evs)


async def test_a_prepared_batch_is_delivered_with_what_was_prepared_for_it(store: Store) -> None:
    batch = events(10, "prepared")
    first_half = {ev.event_id for ev in batch[:5]}
    # Attempt 1: all fail (the whole batch is retried: what was prepared serves again); attempt 2: the
    # first half is acknowledged; attempt 3 (the other half only): prepared again by the sink, not given.
    sink = PreparingSink(lambda ev, n: E503 if n == 1 or (n == 2 and ev.event_id not in first_half) else DELIVERED)
    p = pipeline(store, sink, max_attempts=3)

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        await feed.events(batch)

    summary = await p.run([source], asyncio.Event())
    ids = tuple(ev.event_id for ev in batch)
    assert sink.prepared_for == [list(ids)]
    assert sink.given == [ids, ids, None]
    assert [len(c) for c in sink.calls] == [10, 10, 5]
    assert (summary.delivered, summary.left_in_spool) == (10, 0)
