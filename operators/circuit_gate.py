"""``circuit_gate``: let a batch through only when the circuit breaker permits a call.

A refused batch is handed to ``on_rejected`` (the spill) at once: while the circuit is open
nothing is sent, and sources are never blocked. ``CircuitGate`` adapts a breaker (the state
machine in operators/breaker.py, stored by pipeline/state/circuit_store.py) to what ``retry`` needs,
and decides from a call's outcomes whether the *service* failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import reactivex.operators as ops
from reactivex import Observable

from pattern_tracker.operators.breaker import Permit
from pattern_tracker.model.outcome import Outcome

# Outcome classes that mean the service (or the way to it) is failing, not one event.
SERVICE_FAILURES = frozenset(
    {"connection", "timeout", "http_500", "http_502", "http_503", "http_504", "server_error", "bad_response", "store"}
)


def call_failed(outcomes: Sequence[Outcome]) -> bool:
    """A call failed when nothing in it was processed and the service was at fault (a 5xx,
    a timeout, a refused connection, a garbage answer). Rate limiting (429), a missing parent or
    a rejected event are the service working, not failing."""
    if any(o.status != "retryable" for o in outcomes):
        return False
    return any(o.error_class in SERVICE_FAILURES or (o.error_class or "").startswith("http_5") for o in outcomes)


class Breaker(Protocol):
    def acquire(self) -> Permit | None: ...

    def record(self, permit: Permit, success: bool) -> Any: ...


class CircuitGate:
    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker

    def acquire(self) -> Permit | None:
        return self.breaker.acquire()

    def record(self, permit: Permit, outcomes: Sequence[Outcome]) -> None:
        self.breaker.record(permit, not call_failed(outcomes))


def circuit_gate(
    gate: CircuitGate, on_rejected: Callable[[list[Any]], None]
) -> Callable[[Observable[list[Any]]], Observable[tuple[list[Any], Permit]]]:
    """Pair each batch with its permit, or hand it to ``on_rejected`` when the circuit is open.

    Ask at the moment of sending: when deliveries are bounded by ``merge(max_concurrent)``,
    apply it inside each deferred unit, since merge queues units and a permit taken before the
    queue would let batches through after the circuit opened.

    Examples:
        >>> unit = lambda b: rx.defer(lambda _: rx.of(b).pipe(circuit_gate(gate, spill_batch), ops.flat_map(send)))
        >>> batches.pipe(ops.map(unit), ops.merge(max_concurrent=4))

    Args:
        gate: asked once per batch.
        on_rejected: receives every refused batch (it must make the events durable).

    Returns:
        An operator function from batches to (batch, permit) pairs.
    """

    def admit(batch: list[Any]) -> tuple[list[Any], Permit] | None:
        permit = gate.acquire()
        if permit is None:
            on_rejected(batch)
            return None
        return batch, permit

    def _gate(source: Observable[list[Any]]) -> Observable[tuple[list[Any], Permit]]:
        return source.pipe(ops.map(admit), ops.filter(lambda x: x is not None))  # type: ignore[arg-type,return-value]

    return _gate
