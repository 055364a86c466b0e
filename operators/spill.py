"""``spill``: route what cannot be delivered now to the spool.

The spool's bound and expiry rules are plain code in operators/overflow.py (imported by the hook,
which must not pay for reactivex).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import reactivex.operators as ops
from reactivex import Observable

class Spill(msgspec.Struct, frozen=True):
    """Events that cannot be delivered now, and why (circuit_open, retries_exhausted, not_retryable, parent_missing;
    a source's backlog, overloaded)."""

    events: list[Any]
    reason: str


def spill(on_spill: Callable[[Spill], None]) -> Callable[[Observable[Any]], Observable[Any]]:
    """Hand every ``Spill`` in the stream to ``on_spill`` (which makes it durable); pass the rest on.

    Args:
        on_spill: writes the events to the spool (or keeps them there) and counts the reason.

    Returns:
        An operator function that removes ``Spill`` items from the stream.
    """

    def route(item: Any) -> bool:
        if isinstance(item, Spill):
            on_spill(item)
            return False
        return True

    return ops.filter(route)
