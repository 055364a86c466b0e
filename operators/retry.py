"""``retry``: deliver a batch, retrying only the events whose outcome the policy retries.

Per batch the operator emits one ``Attempted`` per attempt (so acknowledged events can leave the
spool at once) and, when some events cannot be delivered now, one ``Spill`` with the reason:
``retries_exhausted`` (the policy gave up), ``not_retryable`` (a retryable outcome the policy
does not retry, e.g. bad credentials), ``parent_missing`` (every such outcome says the service
lacks the event's parent: replay brings the event round after it) or ``circuit_open`` (the gate
refused a re-attempt).
The delay between attempts is a ``timer`` on the given scheduler (a recursive
catch-and-timer: only the lazy inner call is retried, never a stream
that already emitted), so Rx virtual time makes the delays exact in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import msgspec
import reactivex as rx
import reactivex.operators as ops
from reactivex import Observable, abc

from pattern_tracker.operators.backoff import RetryPolicy
from pattern_tracker.operators.breaker import Permit
from pattern_tracker.operators.spill import Spill
from pattern_tracker.model.outcome import Outcome, all_acknowledged

# The delivery call: events → an Observable of exactly one list of outcomes (one per event).
Call = Callable[[list[Any]], Observable[list[Outcome]]]


class Attempted(msgspec.Struct, frozen=True):
    events: list[Any]
    outcomes: list[Outcome]
    attempt: int
    permit: str


class Gate(Protocol):
    """What the retry operator asks before each attempt and tells after it (see circuit_gate)."""

    def acquire(self) -> Permit | None: ...

    def record(self, permit: Permit, outcomes: Sequence[Outcome]) -> None: ...


def _worst(outcomes: Sequence[Outcome]) -> Outcome | None:
    """The outcome that asks for the longest wait (Retry-After), else the first one."""
    with_after = [o for o in outcomes if o.retry_after is not None]
    if with_after:
        return max(with_after, key=lambda o: o.retry_after or 0.0)
    return outcomes[0] if outcomes else None


class AfterAttempt(NamedTuple):
    """What one attempt leads to: its step, what to spill now, and what to try again after ``delay``."""

    step: Attempted
    spill: Spill | None
    again: list[Any]
    delay: float


def after_attempt(events: list[Any], outcomes: list[Outcome], n: int, permit: Permit, policy: RetryPolicy,
                  gate: Gate) -> AfterAttempt:
    """The retry rule for attempt ``n`` of ``events`` (plain code, no Rx, no clock): the gate is told
    the outcomes; events whose retryable outcome the policy retries are tried again, the other
    retryable ones spilled with the reason, the rest (acknowledged or permanent) settled by ``step``.
    Both drivers share it: the Rx ``retry`` operator (timers on a scheduler) and the coroutine
    ``operators.delivery.deliver_batch``."""
    gate.record(permit, outcomes)
    step = Attempted(events, outcomes, n, permit)
    if all_acknowledged(outcomes):
        return AfterAttempt(step, None, [], 0.0)
    again: list[Any] = []
    again_outcomes: list[Outcome] = []
    give_up: list[Any] = []
    exhausted = False
    for ev, out in zip(events, outcomes):
        if out.status != "retryable":
            continue
        if policy.should_retry(out, n):
            again.append(ev)
            again_outcomes.append(out)
        else:
            give_up.append(ev)
            exhausted = exhausted or policy.should_retry(out, 0)
    spilled = None
    if give_up:
        missing = all(o.error_class == "parent_missing" for o in outcomes if o.status == "retryable"
                      and not policy.should_retry(o, n))
        spilled = Spill(give_up, "retries_exhausted" if exhausted else "parent_missing" if missing else "not_retryable")
    delay = policy.get_delay(n, _worst(again_outcomes)) if again else 0.0
    return AfterAttempt(step, spilled, again, delay)


def retry(
    call: Call,
    policy: RetryPolicy,
    gate: Gate,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[tuple[list[Any], Permit]], Observable[Attempted | Spill]]:
    """A function from (batch, first permit) to the Observable of its attempts.

    Examples:
        >>> gated.pipe(ops.map(retry(call, policy, gate, scheduler)), ops.merge(max_concurrent=4))

    Args:
        call: the delivery; must not fail (the sink turns every error into outcomes).
        policy: ``should_retry(outcome, attempt)`` and ``get_delay(attempt, outcome)``.
        gate: the circuit breaker: asked before every re-attempt, told the result of every attempt.
        scheduler: where the backoff timers run (the subscription's scheduler when None).

    Returns:
        A function to use with ``map`` + ``merge``: one inner Observable per batch.
    """

    def attempt(events: list[Any], permit: Permit, n: int) -> Observable[Attempted | Spill]:
        def after(outcomes: list[Outcome]) -> Observable[Attempted | Spill]:
            step, spilled, again, delay = after_attempt(events, outcomes, n, permit, policy, gate)
            head: list[Attempted | Spill] = [step] if spilled is None else [step, spilled]
            if not again:
                return rx.from_iterable(head)

            def next_attempt(_: Any) -> Observable[Attempted | Spill]:
                next_permit = gate.acquire()
                if next_permit is None:
                    return rx.of(Spill(again, "circuit_open"))
                return attempt(again, next_permit, n + 1)

            return rx.concat(rx.from_iterable(head), rx.timer(delay, scheduler=scheduler).pipe(ops.flat_map(next_attempt)))

        return rx.defer(lambda _: call(events)).pipe(ops.flat_map(after))

    def start(item: tuple[list[Any], Permit]) -> Observable[Attempted | Spill]:
        events, permit = item
        return attempt(events, permit, 1)

    return start
