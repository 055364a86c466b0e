"""The circuit breaker's state in the LMDB store, shared by every process on one data directory.

Each transition is one write transaction (LMDB serialises writers across processes), so two
processes never both take the last half-open trial slot. The common path — a call while closed,
a success with nothing to reset — is a read transaction only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from pattern_tracker.operators import breaker
from pattern_tracker.operators.breaker import BreakerSettings, BreakerState, Permit
from pattern_tracker.core.store import Store

KEY = b"circuit"
# JSON, so that the hook can read the state with the standard library (pipeline/hook.py).
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(BreakerState)


def _decode(raw: bytes | None) -> BreakerState:
    """The stored state; an unreadable record (an older format, damage) counts as closed and is
    overwritten at the next transition, rather than stopping every command."""
    if not raw:
        return BreakerState()
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        import logging

        logging.getLogger("pattern_tracker.circuit").warning("unreadable circuit state in the store: treated as closed")
        return BreakerState()


class SharedBreaker:
    def __init__(self, store: Store, settings: BreakerSettings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._db = store.db("state")
        # Called with (old_state, new_state) names after this process changed the state.
        self.on_transition: Callable[[str, str], None] | None = None

    def state(self) -> BreakerState:
        raw = self.store.read(lambda txn: txn.get(KEY, db=self._db))
        return _decode(raw)

    def _update(self, fn: Callable[[BreakerState], tuple[Permit | None, BreakerState]]) -> tuple[Permit | None, BreakerState]:
        def txn_fn(txn) -> tuple[Permit | None, BreakerState, str]:  # type: ignore[no-untyped-def]
            raw = txn.get(KEY, db=self._db)
            old = _decode(raw)
            permit, new = fn(old)
            if new != old:
                txn.put(KEY, _encoder.encode(new), db=self._db)
            return permit, new, old.state

        permit, new, old_state = self.store.write(txn_fn)
        if new.state != old_state and self.on_transition is not None:
            self.on_transition(old_state, new.state)
        return permit, new

    def acquire(self) -> Permit | None:
        """A permit for one call, or None: fail fast (the circuit is open)."""
        current = self.state()
        if current.state in ("closed", "disabled"):
            return "call"
        permit, _ = self._update(lambda s: breaker.acquire(s, self.settings, self.clock()))
        return permit

    def record(self, permit: Permit, success: bool) -> BreakerState:
        current = self.state()
        if (permit == "call" and success and current.state == "closed" and current.failure_count == 0
                and self.settings.mode == "consecutive"):
            return current  # nothing to reset: no write
        if current.state == "disabled":
            return current
        _, new = self._update(lambda s: (None, breaker.record(s, self.settings, self.clock(), permit, success)))
        return new

    def reset(self) -> BreakerState:
        return self._update(lambda s: (None, breaker.reset(s, self.clock())))[1]

    def force_open(self) -> BreakerState:
        return self._update(lambda s: (None, breaker.force_open(s, self.clock())))[1]

    def disable(self) -> BreakerState:
        return self._update(lambda s: (None, breaker.disable(s, self.clock())))[1]

    def retry_at(self) -> float | None:
        return breaker.retry_at(self.state(), self.settings)
