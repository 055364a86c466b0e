"""The ``replay`` source: the events of an LMDB archive, in order, optionally paced.

``rate``: at most that many events per second. ``speedup``: the archive's own timing
(``occurred_at`` gaps) played X times faster. Both may be combined. The archive is durable, so
events are not spooled on the way in; what cannot be delivered is spooled by the spill, into
free room only: a replay never makes the spool drop an entry, it stops reading when the spool
is full and the service unavailable (Feed.archived).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pattern_tracker.core.bounds import MAX_REPLAY_RATE, bounded_number
from pattern_tracker.model.archive import Archive
from pattern_tracker.runtime import Feed, Source


def replay_source(
    archive: Archive,
    rate: float | None = None,
    speedup: float | None = None,
    chunk: int = 100,
    on_progress: Callable[[int], None] | None = None,
    skip: int = 0,
) -> Source:
    """``skip``: start after the archive's first ``skip`` events (resuming a replay that stopped)."""
    if rate is not None:
        bounded_number(rate, 0, MAX_REPLAY_RATE, above=True, name="rate")
    if speedup is not None:
        bounded_number(speedup, 0, above=True, name="speedup")

    async def run(feed: Feed, stop: asyncio.Event) -> None:
        started = time.monotonic()
        first_at: float | None = None
        sent = 0
        for events in archive.chunks(chunk, after=skip):
            while events and not stop.is_set():
                now = time.monotonic() - started
                due_rate = sent / rate if rate else 0.0
                if speedup:
                    first_at = events[0].occurred_at if first_at is None else first_at
                    ready = [ev for ev in events if (ev.occurred_at - first_at) / speedup <= now]
                    due = (events[0].occurred_at - first_at) / speedup
                else:
                    ready, due = events, 0.0
                wait = max(due_rate, due) - now
                if wait > 0 or not ready:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.001))
                    except TimeoutError:
                        pass
                    continue
                if rate:
                    ready = ready[: max(1, int(rate * (now + 0.05)) - sent)]
                taken = await feed.archived(ready)
                sent += taken
                events = events[taken:]
                if on_progress is not None:
                    on_progress(sent)
                if taken < len(ready):
                    return  # the feed stopped taking (the spool full, stopped, or a loss): the rest stays unread
            if stop.is_set():
                return

    return run
