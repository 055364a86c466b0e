"""``deliver_batch``: one batch's circuit gate, delivery attempts and retries as one coroutine.

The same rules as the Rx chain ``circuit_gate`` ─► ``retry`` (their policies are shared, plain
code: ``CircuitGate``, ``RetryPolicy``, ``retry.after_attempt``), driven by ``await`` instead of
one Observable per batch, per attempt and per timer: the per-batch Rx plumbing (defer, of,
flat_map, from_future, merge and their schedulers) cost more than delivering to a fast sink.
The Rx operators stay for streams of batches on a scheduler (tests run them in virtual time).

Every step goes to ``on_step`` as it happens: an ``Attempted`` per attempt (acknowledged events
can leave the spool at once), a ``Spill`` for what cannot be delivered now; a batch the gate
refuses goes to ``on_rejected`` whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pattern_tracker.model.outcome import Outcome
from pattern_tracker.operators.backoff import RetryPolicy
from pattern_tracker.operators.retry import Attempted, Gate, after_attempt
from pattern_tracker.operators.spill import Spill

# The delivery call: events → exactly one outcome per event (it never raises for delivery errors).
AsyncCall = Callable[[list[Any]], Awaitable[list[Outcome]]]


async def deliver_batch(
    events: list[Any],
    call: AsyncCall,
    policy: RetryPolicy,
    gate: Gate,
    on_step: Callable[[Attempted | Spill], None],
    on_rejected: Callable[[list[Any]], None],
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Deliver ``events``: ask the gate, attempt, retry what the policy retries after its delay.

    Examples:
        >>> await deliver_batch(batch, sink.deliver, ExponentialBackoff(), CircuitGate(breaker), settle, spill)

    Args:
        events: one batch.
        call: the delivery; must not raise (the sink turns every error into outcomes).
        policy: ``should_retry(outcome, attempt)`` and ``get_delay(attempt, outcome)``.
        gate: asked before every attempt (the first included), told the outcomes of every attempt.
        on_step: receives each ``Attempted`` and ``Spill`` in order; must make spills durable.
        on_rejected: receives the batch when the gate refuses its first attempt.
        sleep: the wait between attempts (injected by tests).
    """
    permit = gate.acquire()
    if permit is None:
        on_rejected(events)
        return
    n = 1
    while True:
        step, spilled, again, delay = after_attempt(events, await call(events), n, permit, policy, gate)
        on_step(step)
        if spilled is not None:
            on_step(spilled)
        if not again:
            return
        await sleep(delay)
        permit = gate.acquire()
        if permit is None:
            on_step(Spill(again, "circuit_open"))
            return
        events, n = again, n + 1
