"""The ledger of the graph's results: what each step means for the spool.

Acknowledged → removed from the spool (only now: ack after delivery); permanent → dead letter;
retryable → still in flight (the retry operator tries again); cannot deliver now → spilled,
left in the spool for replay (an event the spool dropped or let expire meanwhile stays gone:
``Spool.mark_spilled``). Counters and telemetry go with each.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from pattern_tracker.core import metrics
from pattern_tracker.model.events import PatternEvent
from pattern_tracker.model.outcome import DELIVERED
from pattern_tracker.operators.retry import Attempted
from pattern_tracker.operators.spill import Spill
from pattern_tracker.runtime.background import Background
from pattern_tracker.runtime.counters import StoreCounters
from pattern_tracker.runtime.flow import Flow
from pattern_tracker.runtime.summary import RunSummary
from pattern_tracker.state.dead_letter import DeadLetter, DeadLetters
from pattern_tracker.state.spool import Spool
from pattern_tracker.telemetry import Telemetry

# The runtime's one logger name, whichever of its modules logs (log lines name it).
log = logging.getLogger("pattern_tracker.runtime")


class Settlement:
    def __init__(self, flow: Flow, background: Background, counters: StoreCounters, spool: Spool,
                 dead_letters: DeadLetters, summary: RunSummary, telemetry: Telemetry) -> None:
        self._flow = flow
        self._background = background
        self._counters = counters
        self._spool = spool
        self._dead_letters = dead_letters
        self._summary = summary
        self._s = {name: telemetry.stage(name) for name in
                   ("validate", "circuit_gate", "retry", "deliver", "spill", "dead_letter", "hook")}
        self._m = telemetry.pipeline
        self.last_delivery_at: float | None = None

    def on_step(self, step: Attempted | Spill) -> None:
        if isinstance(step, Spill):
            self.spill(step.events, step.reason)
        else:
            self.settle(step)

    def on_invalid(self, ev: PatternEvent, reason: str) -> None:
        """Refused by validation: a dead letter at once (retrying cannot make it valid)."""
        letter = DeadLetter(event=ev, reason=reason, stage="validate", error_class="validation", failed_at=time.time())
        log.warning("event %s rejected by validation: %s", ev.event_id, reason)
        self._summary.dead_lettered += 1
        self._s["validate"].count(errors=1)
        self._s["dead_letter"].count(1, 1)
        self._s["dead_letter"].mark(1, **{"pattern_tracker.error_class": "validation", "pattern_tracker.from_stage": "validate"})
        self._m.dropped("validate", "validation", 1)
        self._m.dead_lettered("validate", ("validation",))
        self._flow.forget([ev.event_id])
        self._flow.credits.release(1)
        only_here = self._take_unspooled([ev.event_id])
        # events.dead_lettered counts it as settle() counts the service's refusals (metrics,
        # status and the dashboard read it), in the same write as the move
        self._counters.tally({"events.dead_lettered": 1})
        counts, last = self._counters.take_all()

        def move(txn: Any) -> None:
            self._dead_letters.put(txn, [letter])
            self._spool.letter(txn, [ev.event_id], letter.failed_at)
            self._counters.add(txn, counts, last, letter.failed_at)

        self._background.write(move, leaving=[ev.event_id], keeping=only_here, what="the move to the dead letter")

    def on_rejected(self, events: list[PatternEvent]) -> None:
        """Kept out by the open circuit."""
        self._s["circuit_gate"].count(len(events), 0, errors=len(events))
        self._s["circuit_gate"].mark(len(events), error="circuit open")
        self.spill(events, "circuit_open")

    def settle(self, step: Attempted) -> None:
        """Acknowledged → out of the spool; permanent → dead letter; retryable → still in flight.

        One pass over the batch (none when the sink acknowledged it whole), one store write for
        its acknowledgements, dead letters and counters."""
        now = time.time()
        events, outcomes = step.events, step.outcomes
        letters: list[DeadLetter] = []
        retryable = already = 0
        if outcomes.count(DELIVERED) == len(outcomes):  # the whole batch delivered: C speed
            acked_events = events
            acked = [ev.event_id for ev in events]
        else:
            acked_events = []
            for ev, out in zip(events, outcomes):
                status = out.status
                if status == "delivered" or status == "already_exists":
                    acked_events.append(ev)
                    already += status == "already_exists"
                elif status == "permanent":
                    letters.append(DeadLetter(event=ev, reason=out.reason, http_status=out.http_status,
                                              error_class=out.error_class, failed_at=now))
                else:
                    retryable += 1
            acked = [ev.event_id for ev in acked_events]
        delivered = len(acked) - already
        self._summary.delivered += delivered
        self._summary.already_existed += already
        # Live edits only (an archive replayed today would only measure its age): their
        # end-to-end latency, and the spans of the hook that recorded their times.
        live = [ev for ev in acked_events if ev.source != "replay"]
        if live:
            self._emit_recorded_stages(live)
        e2e = [now - ev.occurred_at for ev in live if ev.occurred_at > 0]
        done = acked + [letter.event.event_id for letter in letters]
        replayed_ok = self._flow.forget(acked)
        replayed_letters = self._flow.forget([letter.event.event_id for letter in letters])
        self._flow.credits.release(len(done))
        m: dict[str, int] = {}
        retried = step.attempt > 1
        if retried:
            self._summary.retried += len(step.events)
            self._s["retry"].count(len(step.events), len(acked))
            metrics.bump(m, "retry.attempts", len(step.events))
        metrics.bump(m, "retry.successful_with_retry" if retried else "retry.successful_without_retry", len(acked))
        metrics.bump(m, "retry.failed_with_retry" if retried else "retry.failed_without_retry", len(letters))
        metrics.bump(m, "events.delivered", delivered)
        metrics.bump(m, "events.already_existed", already)
        metrics.bump(m, "events.dead_lettered", len(letters))
        if e2e:
            metrics.observe(m, "e2e", e2e)
            self._m.end_to_end(e2e)
        self._s["deliver"].count(len(step.events), len(acked), errors=retryable + len(letters))
        if acked:
            self.last_delivery_at = now
            self._flow.acked_since_wake += len(acked)
        if done:
            self._flow.settled(replayed_ok + replayed_letters)
        if letters:
            self._summary.dead_lettered += len(letters)
            self._s["dead_letter"].count(len(letters), len(letters))
            self._m.dead_lettered("deliver", (letter.error_class for letter in letters))
            self._s["dead_letter"].mark(len(letters), **{"pattern_tracker.from_stage": "deliver"})
            for letter in letters:
                log.warning("event %s dead-lettered (HTTP %s): %s", letter.event.event_id, letter.http_status, letter.reason)

        unspooled = self._flow.unspooled
        acked_spooled = [eid for eid in acked if eid not in unspooled]
        lettered_spooled = [letter.event.event_id for letter in letters if letter.event.event_id not in unspooled]
        spooled = acked_spooled + lettered_spooled
        # Dead letters of an archive's events: the dead letter is their only record.
        only_here = self._take_unspooled([letter.event.event_id for letter in letters])
        unspooled.difference_update(done)
        # spool.acked is counted by the write that removes the entries (``Spool.acknowledge``):
        # an event dropped while in flight and then delivered has no entry left to count.
        self._counters.tally({**m, "spool.replayed_ok": replayed_ok})
        if acked:
            self._counters.acked(now)
        if not spooled and not letters:
            # Events of a durable source (an archive) leave no spool entry: no write is needed now;
            # the counters go to the store with the next write, or within a second.
            self._counters.flush_soon()
            return
        counts, last = self._counters.take_all()

        def txn_fn(txn: Any) -> int:
            removed = self._spool.acknowledge(txn, acked_spooled, now)
            if letters:
                self._spool.letter(txn, lettered_spooled, now)
                self._dead_letters.put(txn, letters)
            self._counters.add(txn, counts, last, now)
            return removed

        written = self._background.write(txn_fn, leaving=spooled, keeping=only_here, what="the move to the dead letter")
        if acked_spooled:
            written.add_done_callback(functools.partial(self._delivered_anyway, len(acked_spooled)))

    def _delivered_anyway(self, acked: int, written: asyncio.Future[int]) -> None:
        """Count the acknowledged events whose spool entry had already gone (dropped or expired
        while in flight): the write removed fewer entries than it was given."""
        if not written.cancelled() and written.exception() is None:
            self._summary.delivered_anyway += acked - written.result()

    def _take_unspooled(self, event_ids: list[str]) -> list[str]:
        """Those of ``event_ids`` from a durable source (no spool entry), no longer so marked:
        the write that settles them now is their only record in the store."""
        unspooled = self._flow.unspooled
        taken = [eid for eid in event_ids if eid in unspooled]
        unspooled.difference_update(taken)
        return taken

    def _emit_recorded_stages(self, acked: list[PatternEvent]) -> None:
        """Spans of stages that ran in another process (the hook) and recorded their times."""
        stage = self._s["hook"]
        for ev in acked:
            times = ev.timings.get("hook") if ev.timings else None
            if times and len(times) == 2:
                stage.emit_span(times[0], times[1], **{"pattern_tracker.event_id": ev.event_id,
                                                       "pattern_tracker.tool": ev.tool_name or ""})
                stage.observe(max(0.0, times[1] - times[0]))
                stage.count(1, 1)

    def spill(self, events: list[PatternEvent], reason: str) -> None:
        """Cannot deliver now: the events stay in (or go to) the spool; replay takes them later.
        A live event the overflow policy dropped (or that expired) since it was read is not
        queued again: the check is in the spill's own write transaction (``spill_action``)."""
        now = time.time()
        ids = [ev.event_id for ev in events]
        self._flow.forget(ids)
        self._flow.credits.release(len(events))
        self._summary.spilled += len(events)
        by_reason = self._summary.spilled_by_reason
        by_reason[reason] = by_reason.get(reason, 0) + len(events)
        self._s["spill"].count(len(events), len(events))
        self._s["spill"].mark(len(events), **{"pattern_tracker.reason": reason})
        self._m.spilled(reason, len(events))
        self._flow.backlog = self._flow.spilling = True
        self._flow.wake_replay()

        if reason == "retries_exhausted":
            self._counters.tally({"retry.failed_with_retry": len(events)})
        elif reason == "not_retryable":
            self._counters.tally({"retry.failed_without_retry": len(events)})
        counts = self._counters.take()
        # An archive's events get their spool entry now: this write is their only record. They
        # take free room only (the feed kept room for them), never a spooled event's place.
        only_here = self._take_unspooled(ids)
        durable = frozenset(only_here)

        def txn_fn(txn: Any) -> int:
            kept = self._spool.mark_spilled(txn, events, reason, now, durable=durable)
            self._spool.counters.add(txn, counts, now)
            return kept

        written = self._background.write(txn_fn, keeping=only_here, what="the spill to the spool")
        if reason != "circuit_open":
            written.add_done_callback(lambda fut: self._said_kept(fut, len(events), reason))

    @staticmethod
    def _said_kept(fut: Any, spilled: int, reason: str) -> None:
        """The spill's log line, once its write committed: the events the spool holds now (not
        those it dropped or let expire while they were in flight: they stay gone)."""
        if fut.cancelled() or fut.exception() is not None:
            return  # said by Background (not kept, or the write failed)
        kept = fut.result()
        gone = f"; {spilled - kept} dropped or expired while in flight stay gone" if kept < spilled else ""
        log.info("%d event(s) kept in the spool for later (%s)%s", kept, reason, gone)

    def kept_in_spool(self, events: list[PatternEvent], reason: str) -> None:
        """Live events a source just spooled, left there for replay instead of entering the
        graph (backlog after a spill, or the graph full): a spill too."""
        self._s["spill"].count(len(events), len(events))
        self._s["spill"].mark(len(events), **{"pattern_tracker.reason": reason})
        self._m.spilled(reason, len(events))
        self._summary.spilled += len(events)
        self._background.write(lambda txn: self._spool.mark_spilled(txn, events, reason, time.time()))
