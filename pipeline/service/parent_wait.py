"""Parents still in flight on another replica, for a lineage store several ``serve`` processes share.

One ``serve`` runs its batches in the order their requests arrived (:mod:`.group_commit`), so a
tracker that sends a parent's batch before its child's always finds the parent stored. Replicas
behind a load balancer share no such order: the child's batch can reach replica B while replica A
is still committing the parent's, and the child would be refused ``Parent pattern not found``
although its parent is milliseconds from being stored. The tracker keeps such events for a later
try, but a replay's chains, deferred batch after batch, pile up in its bounded spool (measured:
two replicas, a 20,000-event replay, most of it deferred until the spool overflowed).

So a replica of a shared store tries those events again, a few times and briefly, before it
answers: a parent in flight is found within a try or two; one that is really missing still gets
its answer, :data:`PARENT_WAITS` (0.175 s) later. Kept short because a parent really missing is
common too: after an outage, a tracker's new events reach serve while their parents still wait in
its spool, and each of their batches pays the whole wait (0.77 s of waits slowed the post-outage
part of a replay and bought nothing over 0.175 s: a 20,000-event two-replica replay deferred no
event with either).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_contract import LineageValidationError, TrackResult

__all__ = ["PARENT_WAITS", "parent_missing", "settle_missing_parents"]

PARENT_WAITS = (0.025, 0.05, 0.1)  # seconds before each new try (0.175 s in all)


def parent_missing(result: TrackResult | BaseException) -> bool:
    return isinstance(result, LineageValidationError) and result.parent_missing


async def settle_missing_parents(
    events: Sequence[TrackRequest], results: list[TrackResult],
    again: Callable[[list[TrackRequest]], Awaitable[list[TrackResult]]],
    waits: Sequence[float] = PARENT_WAITS,
) -> list[TrackResult]:
    """``results`` with each event refused for a missing parent tracked ``again`` (in request order,
    so a chain of them resolves together) after each of ``waits``, until none is left. A try that
    fails (the store unavailable) ends the waiting: the answers so far stand."""
    results = list(results)
    for wait in waits:
        missing = [i for i, result in enumerate(results) if parent_missing(result)]
        if not missing:
            break
        await asyncio.sleep(wait)
        try:
            retried = await again([events[i] for i in missing])
        except Exception:  # noqa: BLE001 - the first answers are still true; the client retries later
            break
        for i, result in zip(missing, retried):
            results[i] = result
    return results
