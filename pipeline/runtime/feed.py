"""What sources get: the durable entry of their output, paced by credits and by room.

Everything a source hands over is in the spool (one write with its version) before it enters
the graph; an archive's events, whose archive is the record, enter without a spool write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pattern_tracker.core.capture import Change
from pattern_tracker.model.events import PatternEvent, SourceName
from pattern_tracker.runtime.background import Background
from pattern_tracker.runtime.flow import Flow
from pattern_tracker.runtime.settlement import Settlement
from pattern_tracker.runtime.summary import RunSummary
from pattern_tracker.state.ingest import Ingest
from pattern_tracker.state.spool import Spool, SpoolFull

# The runtime's one logger name, whichever of its modules logs (log lines name it).
log = logging.getLogger("pattern_tracker.runtime")

# How often a source waiting for room in a full spool (overflow_policy "block") looks again.
ROOM_POLL = 0.1


class Feed:
    """What sources get: hand over changes or events; they become durable first, then flow.

    ``service_unavailable``: whether the spool cannot drain now (circuit open), which ends a
    durable source's wait for room.
    """

    def __init__(self, ingest: Ingest, spool: Spool, background: Background, flow: Flow, settlement: Settlement,
                 summary: RunSummary, service_unavailable: Callable[[], bool], stop: asyncio.Event | None = None) -> None:
        self._ingest = ingest
        self._spool = spool
        self._background = background
        self._flow = flow
        self._settlement = settlement
        self._summary = summary
        self._service_unavailable = service_unavailable
        self._stop = stop if stop is not None else asyncio.Event()
        self._said_full = False

    async def room(self) -> int | None:
        """Events the spool takes now without making anyone wait; None when it never makes a
        source wait (the drop_* policies). Lets a source read no more input than it can store."""
        spool = self._spool
        if spool.limits.policy != "block":
            return None
        return max(0, spool.limits.bound - await self._background.io(spool.size))

    async def wait_for_room(self) -> bool:
        """Sleep until the spool may have room (False: stopped first). Nudges replay meanwhile."""
        self._flow.wake_replay()
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=ROOM_POLL)
        except TimeoutError:
            return True
        return False

    def waiting_for_room(self, why: str = "overflow_policy block") -> None:
        """A source waits for room: said once a run, so a stalled ``run`` says why."""
        if not self._said_full:
            self._said_full = True
            log.info("spool full (%d events, %s): reading waits for room", self._spool.limits.bound, why)

    def stopped_waiting_for_room(self) -> None:
        """A source is ending on the stop signal with input it could not store for want of room."""
        self._summary.stopped_waiting_for_room = True

    async def _durably(self, fn: Callable[..., list[PatternEvent]], items: Sequence[Any], *args: Any,
                       hand_over: Callable[[list[PatternEvent]], Awaitable[None]]) -> tuple[int, int]:
        """``fn(items, *args, now)`` in one write, its events then given to ``hand_over`` (into
        the graph, or left in the spool for replay); returns (events handed over, items stored).

        Under overflow_policy "block" a full spool makes the source wait for room, as configured:
        what fits is stored as room appears (a batch larger than the free room would otherwise
        wait for ever) and handed over at once (held back until the rest fits, it would hold the
        very room the rest waits for), and the wait ends on the stop signal, the rest not stored.
        """
        io = self._background.io
        handed = 0
        rest = list(items)
        while rest:
            try:
                part = await io(fn, rest, *args, time.time())
            except SpoolFull:
                self.waiting_for_room()
            else:
                handed += await self._hand(part, hand_over)
                return handed, len(items)
            room = await self.room() or 0
            if 0 < room < len(rest):
                try:
                    part = await io(fn, rest[:room], *args, time.time())
                except SpoolFull:
                    pass  # another process took the room first
                else:
                    rest = rest[room:]
                    handed += await self._hand(part, hand_over)
                    continue
            if not await self._waited_for_room(len(rest)):
                break
        return handed, len(items) - len(rest)

    async def _waited_for_room(self, waiting: int, durable: bool = False) -> bool:
        """One wait for room in the full spool for ``waiting`` input records; False: stop reading.

        Ended by the stop signal; for a ``durable`` source (its input keeps: an archive) also
        while the service is unavailable (circuit open): the spool cannot drain before then,
        and waiting has no prospect. The rest is left unread for a later run."""
        if durable and self._service_unavailable():
            self._summary.gave_up_on_full_spool = True
            return False
        self.waiting_for_room("a replay never makes the spool drop an event" if durable else "overflow_policy block")
        if await self.wait_for_room():
            return True
        log.warning("stopped while waiting for room in the full spool: %d input record(s) not stored", waiting)
        self.stopped_waiting_for_room()
        return False

    async def _hand(self, events: list[PatternEvent], hand_over: Callable[[list[PatternEvent]], Awaitable[None]]) -> int:
        """``hand_over(events)``, just stored. Until it is done (it may wait for credits) replay
        must not push them from the spool as well: each would be delivered twice."""
        arriving = self._flow.arriving
        arriving.update(ev.event_id for ev in events)
        try:
            await hand_over(events)
        finally:
            arriving.difference_update(ev.event_id for ev in events)
        return len(events)

    async def _offer(self, events: list[PatternEvent]) -> None:
        self._offer_now(events)

    def _offer_now(self, events: list[PatternEvent]) -> None:
        """Live events (already spooled): into the graph now, or left for replay (backlog mode)."""
        if not events:
            return
        flow = self._flow
        if flow.backlog or not flow.credits.try_acquire(len(events)):
            # Left in the spool for replay. That is a spill when delivery is failing (backlog
            # after a spill) or the graph is full; not when replay merely has not looked yet.
            reason = "backlog" if flow.spilling else None if flow.backlog else "overloaded"
            if reason is not None:
                self._settlement.kept_in_spool(events, reason)
            flow.backlog = True
            flow.wake_replay()
            return
        flow.push(events)

    async def changes(self, changes: Sequence[Change], source: SourceName) -> int:
        """Version, spool and push ``changes``; returns how many became events (unchanged give none).

        Stopped while waiting for room (overflow_policy "block"), the changes not stored are
        not counted as read.
        """
        ingest = self._ingest
        before = ingest.unchanged
        handed, stored = await self._durably(ingest.accept_changes, changes, source, hand_over=self._offer)
        self._summary.read += stored
        self._summary.unchanged += ingest.unchanged - before
        return handed

    async def events(self, events: Sequence[PatternEvent]) -> int:
        """Push fully formed events (queued in the spool first)."""
        handed, stored = await self._durably(self._ingest.accept_events, list(events), hand_over=self._offer)
        self._summary.read += stored
        return handed

    async def archived(self, events: list[PatternEvent]) -> int:
        """Push events from a durable source (an archive): no spool write on the way in — the
        archive is the record; only what cannot be delivered now is spooled (by the spill).
        Returns how many were taken; fewer than given: the source must stop (the rest unread).

        Whatever the overflow policy, an archive's events never make the spool drop an entry:
        the spool is shared, and an entry may be a hook's edit whose only record it is, while
        the archive keeps its own. So they enter only while the spool has free room for each
        of them should it spill (``_archive_room``), waiting for room as under ``block``; while
        the service is unavailable (circuit open) the wait ends, the rest left for a later replay.
        """
        taken = 0
        while taken < len(events) and not self._stop.is_set():
            room = min(len(events) - taken, self._archive_room())
            if room <= 0:
                if not await self._waited_for_room(len(events) - taken, durable=True):
                    break
                continue
            part = events[taken:taken + room]
            kept = await self._take_archived(part)
            if kept is None:
                continue  # another process took the room first: look again
            taken += kept
            if kept < len(part):
                break
        return taken

    def _archive_room(self) -> int:
        """Free room in the spool for an archive's events: the bound, less what the spool holds,
        the archive's events in the graph without a spool entry (each may need one) and those
        whose write into the spool is queued. (The size is read here, not on the store thread:
        a hop there per chunk cost a replay ~40% of its rate; a stat is a few microseconds.)"""
        return self._spool.limits.bound - self._spool.size() - len(self._flow.unspooled) - self._background.keeping

    async def _take_archived(self, events: list[PatternEvent]) -> int | None:
        """``events`` (the spool has room for them) into the graph, or behind the backlog into the
        spool. Returns how many were taken (0: stopped, or the store cannot keep them); None:
        the spool had no room after all (another process filled it) or the flow went into backlog
        mode while these waited for credits: nothing taken, look again."""
        flow = self._flow
        if flow.backlog:
            # Older events wait in the spool: these queue behind them (replay keeps the order).
            ids = frozenset(ev.event_id for ev in events)
            try:
                await self._background.commit(
                    lambda txn: self._spool.mark_spilled(txn, events, "backlog", time.time(), durable=ids))
            except SpoolFull:
                return None
            except Exception as exc:  # noqa: BLE001 - the store full, a disk error: said, counted, reading stops
                self._summary.read += len(events)  # read, and lost from the spool's view: read = kept + not kept
                self._background.not_kept(len(events), "the spill to the spool", exc)
                return 0
            self._summary.read += len(events)
            self._summary.spilled += len(events)
            flow.wake_replay()
            return len(events)
        await flow.credits.acquire(len(events))
        if self._stop.is_set() or flow.backlog:
            flow.credits.release(len(events))
            # Stopped; or a spill meanwhile: these queue behind it in the spool (look again).
            return 0 if self._stop.is_set() else None
        self._summary.read += len(events)
        ids = [ev.event_id for ev in events]
        flow.unspooled.update(ids)
        flow.push(events, ids)
        return len(events)


Source = Callable[[Feed, asyncio.Event], Awaitable[None]]
