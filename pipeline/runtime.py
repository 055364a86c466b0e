"""The running graph, on asyncio + Rx:

    sources ─► Feed (version + spool, one txn) ─► validate ─► batch ─► circuit_gate ─► retry(deliver) ─► settle
       ▲                                                             │ refused              │ gave up
       └── replay: the spool's backlog, oldest first ◄── spill ◄─────┴──────────────────────┘

Everything a source reads is in the spool before it enters the graph, and leaves it only when
the sink acknowledged it (or it was dead-lettered): a SIGTERM or a crash at any point loses
nothing. When an event cannot be delivered now (circuit open, retries exhausted, graph full,
shutdown) it simply stays in the spool ("spilled"), and the pipeline switches to *backlog
mode*: new events are only spooled, and the replay source feeds the spool to the graph in
order, oldest first, once the circuit lets traffic through. When replay catches up, live
events flow straight in again. Sources are never blocked by delivery (only by the ``block``
overflow policy, by choice).

Memory is bounded by credits (events in the graph); concurrency of deliveries by
``merge(max_concurrent)``. Only the holder of the drain lease replays the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec
import reactivex as rx
import reactivex.operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from pattern_tracker.operators.backoff import ExponentialBackoff, RetryPolicy
from pattern_tracker.operators.batch import batch
from pattern_tracker.operators.circuit_gate import CircuitGate, call_failed, circuit_gate
from pattern_tracker.operators.retry import Attempted, retry
from pattern_tracker.operators.spill import Spill, spill
from pattern_tracker.operators.traced import traced
from pattern_tracker.operators.validate import validate
from pattern_tracker.core import metrics
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.state.dead_letter import DeadLetter, DeadLetters
from pattern_tracker.model.events import PatternEvent, SourceName
from pattern_tracker.core.capture import Change
from pattern_tracker.state.ingest import Ingest
from pattern_tracker.core.lease import DrainLease
from pattern_tracker.core.redact import Redactor
from pattern_tracker.state.spool import Spool, SpoolFull
from pattern_tracker.core.store import Store
from pattern_tracker.telemetry import Telemetry
from pattern_tracker.model.outcome import Outcome
from pattern_tracker.sinks.base import Sink

log = logging.getLogger("pattern_tracker.runtime")
T = TypeVar("T")


# Replay reads this many batches of the spool at a time and puts each file's versions in order
# within them (spills land in the spool in the order they failed, not in chain order).
REPLAY_WINDOW = 20


def chain_order(events: list[PatternEvent]) -> list[PatternEvent]:
    """The same events, each file's versions ascending, every file keeping the slots it had.

    A child spilled before its parent (it failed first) would otherwise reach the service
    first and be refused with "parent not found" until the parent comes round.
    """
    slots: dict[str | None, list[int]] = {}
    for i, ev in enumerate(events):
        slots.setdefault(ev.file_path, []).append(i)
    out = list(events)
    for positions in slots.values():
        if len(positions) > 1:
            ordered = sorted((events[i] for i in positions), key=lambda ev: _version_key(ev.pattern_version))
            for pos, ev in zip(positions, ordered):
                out[pos] = ev
    return out


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


class RuntimeSettings(msgspec.Struct, kw_only=True, frozen=True):
    batch_size: int = 100
    batch_linger: float = 0.05
    max_in_flight_batches: int = 4
    max_concurrency: int = 4
    shutdown_timeout: float = 10.0
    # Seconds between checks of an idle backlog (and TTL expiry).
    replay_poll: float = 5.0


class RunSummary(msgspec.Struct, kw_only=True):
    read: int = 0
    unchanged: int = 0
    delivered: int = 0
    already_existed: int = 0
    retried: int = 0
    spilled: int = 0
    replayed: int = 0
    dead_lettered: int = 0
    expired: int = 0
    left_in_spool: int = 0
    seconds: float = 0.0
    # Stopped while a source waited for room in the full spool (overflow_policy "block"): the
    # input it could not store was left unread (stdin) or is found again at the next start (watch).
    stopped_waiting_for_room: bool = False
    # A durable source (an archive) stopped reading, not the user: the spool full under "block"
    # and the service unavailable (circuit open), waiting had no prospect; the rest is unread.
    gave_up_on_full_spool: bool = False


class Credits:
    """A counting gate for events in the graph (Rx has no backpressure; merge's queue is unbounded)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.available = limit
        self._changed = asyncio.Event()

    def try_acquire(self, n: int) -> bool:
        if self.available < n:
            return False
        self.available -= n
        return True

    async def acquire(self, n: int) -> None:
        n = min(n, self.limit)
        while self.available < n:
            self._changed.clear()
            await self._changed.wait()
        self.available -= n

    def release(self, n: int) -> None:
        self.available = min(self.limit, self.available + n)
        self._changed.set()


# How often a source waiting for room in a full spool (overflow_policy "block") looks again.
ROOM_POLL = 0.1


class Feed:
    """What sources get: hand over changes or events; they become durable first, then flow."""

    def __init__(self, pipeline: Pipeline, stop: asyncio.Event | None = None) -> None:
        self._p = pipeline
        self._stop = stop if stop is not None else asyncio.Event()
        self._said_full = False

    async def room(self) -> int | None:
        """Events the spool takes now without making anyone wait; None when it never makes a
        source wait (the drop_* policies). Lets a source read no more input than it can store."""
        spool = self._p.spool
        if spool.limits.policy != "block":
            return None
        return max(0, spool.limits.bound - await self._p.io(spool.size))

    async def wait_for_room(self) -> bool:
        """Sleep until the spool may have room (False: stopped first). Nudges replay meanwhile."""
        self._p.wake_replay()
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=ROOM_POLL)
        except TimeoutError:
            return True
        return False

    def waiting_for_room(self) -> None:
        """A source waits for room: said once a run, so a stalled ``run`` says why."""
        if not self._said_full:
            self._said_full = True
            log.info("spool full (%d events, overflow_policy block): reading waits for room", self._p.spool.limits.bound)

    def stopped_waiting_for_room(self) -> None:
        """A source is ending on the stop signal with input it could not store for want of room."""
        self._p.summary.stopped_waiting_for_room = True

    async def _durably(self, fn: Callable[..., list[PatternEvent]], items: Sequence[Any], *args: Any,
                       hand_over: Callable[[list[PatternEvent]], Awaitable[None]],
                       give_up: Callable[[], bool] | None = None) -> tuple[int, int]:
        """``fn(items, *args, now)`` in one write, its events then given to ``hand_over`` (into
        the graph, or left in the spool for replay); returns (events handed over, items stored).

        Under overflow_policy "block" a full spool makes the source wait for room, as configured:
        what fits is stored as room appears (a batch larger than the free room would otherwise
        wait for ever) and handed over at once (held back until the rest fits, it would hold the
        very room the rest waits for), and the wait ends on the stop signal, the rest not stored.
        ``give_up``: asked before each wait; True ends it too (a source whose input keeps: an archive).
        """
        handed = 0
        rest = list(items)
        while rest:
            try:
                part = await self._p.io(fn, rest, *args, time.time())
            except SpoolFull:
                self.waiting_for_room()
            else:
                handed += await self._hand(part, hand_over)
                return handed, len(items)
            room = await self.room() or 0
            if 0 < room < len(rest):
                try:
                    part = await self._p.io(fn, rest[:room], *args, time.time())
                except SpoolFull:
                    pass  # another process took the room first
                else:
                    rest = rest[room:]
                    handed += await self._hand(part, hand_over)
                    continue
            if give_up is not None and give_up():
                self._p.summary.gave_up_on_full_spool = True
                break
            if not await self.wait_for_room():
                log.warning("stopped while waiting for room in the full spool: %d input record(s) not stored", len(rest))
                self.stopped_waiting_for_room()
                break
        return handed, len(items) - len(rest)

    async def _hand(self, events: list[PatternEvent], hand_over: Callable[[list[PatternEvent]], Awaitable[None]]) -> int:
        """``hand_over(events)``, just stored. Until it is done (it may wait for credits) replay
        must not push them from the spool as well: each would be delivered twice."""
        arriving = self._p._arriving
        arriving.update(ev.event_id for ev in events)
        try:
            await hand_over(events)
        finally:
            arriving.difference_update(ev.event_id for ev in events)
        return len(events)

    async def _offer(self, events: list[PatternEvent]) -> None:
        self._p.offer(events)

    async def _to_graph(self, events: list[PatternEvent]) -> None:
        """Into the graph once it has credits for them (a source paced by delivery), unless in
        backlog mode: then they stay in the spool, for replay to feed in order."""
        p = self._p
        if events and not p._backlog:
            await p._credits.acquire(len(events))
            if not p._backlog:
                p._push(events)
                return
            p._credits.release(len(events))
        p.offer(events)

    async def changes(self, changes: Sequence[Change], source: SourceName) -> int:
        """Version, spool and push ``changes``; returns how many became events (unchanged give none).

        Stopped while waiting for room (overflow_policy "block"), the changes not stored are
        not counted as read.
        """
        p = self._p
        before = p.ingest.unchanged
        handed, stored = await self._durably(p.ingest.accept_changes, changes, source, hand_over=self._offer)
        p.summary.read += stored
        p.summary.unchanged += p.ingest.unchanged - before
        return handed

    async def events(self, events: Sequence[PatternEvent]) -> int:
        """Push fully formed events (queued in the spool first)."""
        p = self._p
        handed, stored = await self._durably(p.ingest.accept_events, list(events), hand_over=self._offer)
        p.summary.read += stored
        return handed

    async def archived(self, events: list[PatternEvent]) -> int:
        """Push events from a durable source (an archive): no spool write on the way in — the
        archive is the record; only what cannot be delivered now is spooled (by the spill).
        Returns how many were taken; fewer than given: the source must stop (the rest unread).

        Under overflow_policy "block" a spill must never need room the spool lacks (it would
        fail, and the events be neither delivered nor spooled): the events are spooled first,
        waiting for room as every source does. An archive keeps: while the service is
        unavailable (circuit open), the wait ends, the rest of the archive left for a later replay.
        """
        p = self._p
        if p.spool.limits.policy == "block":
            _, taken = await self._durably(p.spool.enqueue, events, hand_over=self._to_graph,
                                           give_up=p.service_unavailable)
            p.summary.read += taken
            return taken
        p.summary.read += len(events)
        if p._backlog:
            # Older events wait in the spool: these queue behind them (replay keeps the order).
            await p.io(p.store.write, lambda txn: p.spool.mark_spilled(txn, events, "backlog", time.time()))
            p.summary.spilled += len(events)
            p.wake_replay()
            return len(events)
        await p._credits.acquire(len(events))
        p._unspooled.update(ev.event_id for ev in events)
        p._push(events)
        return len(events)


Source = Callable[[Feed, asyncio.Event], Awaitable[None]]


class Pipeline:
    def __init__(
        self,
        store: Store,
        sink: Sink,
        telemetry: Telemetry,
        settings: RuntimeSettings,
        *,
        spool: Spool | None = None,
        breaker: SharedBreaker | None = None,
        policy: RetryPolicy | None = None,
        replay: bool = True,
        redactor: Redactor | None = None,
        deny_globs: Sequence[str] = (),
    ) -> None:
        from pattern_tracker.operators.breaker import BreakerSettings

        self.store = store
        self.sink = sink
        self.tel = telemetry
        self.settings = settings
        self.spool = spool or Spool(store)
        self.breaker = breaker or SharedBreaker(store, BreakerSettings())
        self.policy = policy or ExponentialBackoff()
        self.replay_enabled = replay
        self.dead_letters = DeadLetters(store)
        self.ingest = Ingest(store, self.spool, redactor=redactor, deny_globs=deny_globs)
        self.lease = DrainLease(store)
        self.summary = RunSummary()
        self.last_delivery_at: float | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pattern-tracker-store")
        self._subject: Subject[list[PatternEvent]] = Subject()
        self._credits = Credits(settings.batch_size * (settings.max_in_flight_batches + 1))
        self._tasks: set[asyncio.Future[Any]] = set()
        self._metrics: dict[str, int] = {}  # cross-process counters waiting for the next store write
        self._inflight: set[str] = set()
        self._leaving: set[str] = set()
        self._unspooled: set[str] = set()  # in the graph from a durable source: no spool entry
        self._arriving: set[str] = set()  # spooled by a source, not yet handed over (Feed._hand)
        self._last_acked_at: float | None = None
        self._flush_pending = False
        self._from_replay: set[str] = set()
        self._backlog = True  # until the replay source has looked at the spool
        self._spilling = False  # something could not be delivered since replay last caught up
        self._wake = asyncio.Event()
        self._acked_since_wake = 0
        self._started = time.monotonic()
        self._stop: asyncio.Event | None = None
        self._s = {name: telemetry.stage(name) for name in
                   ("source", "validate", "batch", "circuit_gate", "retry", "deliver", "spill", "replay", "dead_letter", "hook")}
        self._m = telemetry.pipeline
        self._m.observe(self.breaker, self.spool)  # gauges: read only when a metric reader collects
        telemetry.instrument_sink(sink)  # HTTP client spans (HttpSink's on_request hook)

    # -- plumbing ----------------------------------------------------------------------------

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store thread: LMDB commits stay off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _background(self, fn: Callable[..., Any], *args: Any, leaving: Sequence[str] = ()) -> None:
        """A store write on the store thread. ``leaving``: settled events whose spool entry this
        write removes; until it commits, replay must not pick them up again."""
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        self._tasks.add(fut)
        if leaving:
            self._leaving.update(leaving)
        fut.add_done_callback(lambda f: self._done_background(f, leaving))

    def _done_background(self, fut: asyncio.Future[Any], leaving: Sequence[str]) -> None:
        self._tasks.discard(fut)
        if leaving:
            self._leaving.difference_update(leaving)
            self.wake_replay()  # their spool entries are gone: replay may find the spool empty now
        if not fut.cancelled() and fut.exception() is not None:
            log.error("store write failed: %s", fut.exception())

    def _busy(self, event_id: str) -> bool:
        """In the graph, settled with its spool removal not yet committed, or spooled by a
        source that has yet to hand it over."""
        return event_id in self._inflight or event_id in self._leaving or event_id in self._arriving

    def wake_replay(self) -> None:
        self._wake.set()

    def service_unavailable(self) -> bool:
        """The circuit keeps deliveries out now (open until its trial time, or forced open):
        the spool cannot drain before then. The replay loop's own test."""
        due = self.breaker.retry_at()
        return self.breaker.state().state == "forced_open" or (due is not None and time.time() < due)

    def offer(self, events: list[PatternEvent]) -> None:
        """Live events (already spooled): into the graph now, or left for replay (backlog mode)."""
        if not events:
            return
        if self._backlog or not self._credits.try_acquire(len(events)):
            # Left in the spool for replay. That is a spill when delivery is failing (backlog
            # after a spill) or the graph is full; not when replay merely has not looked yet.
            reason = "backlog" if self._spilling else None if self._backlog else "overloaded"
            if reason is not None:
                self._s["spill"].count(len(events), len(events))
                self._s["spill"].mark(len(events), **{"pattern_tracker.reason": reason})
                self._m.spilled(reason, len(events))
                self.summary.spilled += len(events)
                self._background(self.store.write, lambda txn: self.spool.mark_spilled(txn, events, reason, time.time()))
            self._backlog = True
            self.wake_replay()
            return
        self._push(events)

    def _push(self, events: list[PatternEvent]) -> None:
        """Into the graph as one chunk: operators pay their Rx overhead per chunk, not per event."""
        self._s["source"].count(len(events), len(events))
        self._inflight.update(ev.event_id for ev in events)
        self._subject.on_next(list(events))

    # -- the graph ---------------------------------------------------------------------------

    def _on_invalid(self, ev: PatternEvent, reason: str) -> None:
        letter = DeadLetter(event=ev, reason=reason, stage="validate", error_class="validation", failed_at=time.time())
        log.warning("event %s rejected by validation: %s", ev.event_id, reason)
        self.summary.dead_lettered += 1
        self._s["validate"].count(errors=1)
        self._s["dead_letter"].count(1, 1)
        self._s["dead_letter"].mark(1, **{"pattern_tracker.error_class": "validation", "pattern_tracker.from_stage": "validate"})
        self._m.dropped("validate", "validation", 1)
        self._m.dead_lettered("validate", ("validation",))
        self._forget([ev.event_id])
        self._credits.release(1)

        def move(txn: Any) -> None:
            self.dead_letters.put(txn, [letter])
            self.spool.remove(txn, [ev.event_id])

        self._background(self.store.write, move, leaving=[ev.event_id])

    def _forget(self, event_ids: Sequence[str]) -> int:
        self._m.forget(event_ids)
        replayed = 0
        for eid in event_ids:
            self._inflight.discard(eid)
            if eid in self._from_replay:
                self._from_replay.discard(eid)
                replayed += 1
        return replayed

    def _call(self, events: list[PatternEvent]) -> rx.Observable[list[Outcome]]:
        """One delivery attempt as a lazy Observable of its outcomes (never fails)."""

        async def attempt() -> list[Outcome]:
            earlier = self._m.call_started(ev.event_id for ev in events)  # for http.request.resend_count
            started = time.perf_counter()
            # A re-attempt: a retry span around its deliver span (retry → deliver → HTTP client spans).
            with self._s["retry"].span(sampled=earlier > 0, **{"pattern_tracker.model.events": len(events),
                                                                "pattern_tracker.attempt": earlier + 1}), \
                    self._s["deliver"].span(**{"pattern_tracker.batch.size": len(events), "pattern_tracker.sink": self.sink.name,
                                               "pattern_tracker.attempt": earlier + 1}):
                try:
                    outcomes = await self.sink.deliver(events)
                except Exception as exc:  # noqa: BLE001 - a sink bug must not lose events
                    log.error("sink %s raised %s: %s", self.sink.name, type(exc).__name__, exc)
                    outcomes = [Outcome(status="retryable", reason=str(exc), error_class="internal")] * len(events)
            elapsed = time.perf_counter() - started
            self._s["deliver"].observe(elapsed)
            if len(outcomes) != len(events):
                log.error("sink %s returned %d outcomes for %d events", self.sink.name, len(outcomes), len(events))
                outcomes = [Outcome(status="retryable", reason="outcome count mismatch", error_class="internal")] * len(events)
            self._record_call(outcomes, elapsed)
            return outcomes

        task = asyncio.ensure_future(attempt())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return rx.from_future(task)

    def _record_call(self, outcomes: list[Outcome], elapsed: float) -> None:
        m: dict[str, int] = {}
        metrics.bump(m, "requests.total")
        if call_failed(outcomes):
            cls = next((o.error_class for o in outcomes if o.error_class), None) or "unknown"
            metrics.bump(m, f"requests.failed.{cls}")
        else:
            metrics.bump(m, "requests.succeeded")
        metrics.observe(m, "delivery", [elapsed])
        self._m.delivery(elapsed)
        self._tally(m)

    def _tally(self, counts: dict[str, int]) -> None:
        """Counts of one step: to the OTel counters now, to the store with the next write."""
        self._m.add_counts(counts)
        for name, n in counts.items():
            metrics.bump(self._metrics, name, n)

    def _take_metrics(self) -> dict[str, int]:
        taken, self._metrics = self._metrics, {}
        return taken

    def _on_step(self, step: Attempted | Spill) -> None:
        if isinstance(step, Spill):
            self._spill(step.events, step.reason)
        else:
            self._settle(step)

    def _settle(self, step: Attempted) -> None:
        """Acknowledged → out of the spool; permanent → dead letter; retryable → still in flight."""
        now = time.time()
        acked: list[str] = []
        letters: list[DeadLetter] = []
        retryable = 0
        for ev, out in zip(step.events, step.outcomes):
            if out.acknowledged:
                acked.append(ev.event_id)
                if out.status == "already_exists":
                    self.summary.already_existed += 1
                else:
                    self.summary.delivered += 1
            elif out.status == "permanent":
                letters.append(DeadLetter(event=ev, reason=out.reason, http_status=out.http_status,
                                          error_class=out.error_class, failed_at=now))
            else:
                retryable += 1
        self._emit_recorded_stages(step.events, step.outcomes)
        done = acked + [letter.event.event_id for letter in letters]
        replayed_ok = self._forget(acked)
        self._forget([letter.event.event_id for letter in letters])
        self._credits.release(len(done))
        m: dict[str, int] = {}
        retried = step.attempt > 1
        if retried:
            self.summary.retried += len(step.events)
            self._s["retry"].count(len(step.events), len(acked))
            metrics.bump(m, "retry.attempts", len(step.events))
        metrics.bump(m, "retry.successful_with_retry" if retried else "retry.successful_without_retry", len(acked))
        metrics.bump(m, "retry.failed_with_retry" if retried else "retry.failed_without_retry", len(letters))
        metrics.bump(m, "events.delivered", sum(1 for o in step.outcomes if o.status == "delivered"))
        metrics.bump(m, "events.already_existed", sum(1 for o in step.outcomes if o.status == "already_exists"))
        metrics.bump(m, "events.dead_lettered", len(letters))
        # End-to-end latency of live edits (an archive replayed today would only measure its age).
        e2e = [now - ev.occurred_at for ev, o in zip(step.events, step.outcomes)
               if o.acknowledged and ev.occurred_at > 0 and ev.source != "replay"]
        metrics.observe(m, "e2e", e2e)
        self._m.end_to_end(e2e)
        self._s["deliver"].count(len(step.events), len(acked), errors=retryable + len(letters))
        if acked:
            self.last_delivery_at = now
            self._acked_since_wake += len(acked)
        if done:
            self.wake_replay()
        if letters:
            self.summary.dead_lettered += len(letters)
            self._s["dead_letter"].count(len(letters), len(letters))
            self._m.dead_lettered("deliver", (letter.error_class for letter in letters))
            self._s["dead_letter"].mark(len(letters), **{"pattern_tracker.from_stage": "deliver"})
            for letter in letters:
                log.warning("event %s dead-lettered (HTTP %s): %s", letter.event.event_id, letter.http_status, letter.reason)

        spooled = [eid for eid in done if eid not in self._unspooled]
        self._unspooled.difference_update(done)
        self._tally({**m, "spool.acked": len(spooled), "spool.replayed_ok": replayed_ok})
        if acked:
            self._last_acked_at = now
        if not spooled and not letters:
            # Events of a durable source (an archive) leave no spool entry: no write is needed now;
            # the counters go to the store with the next write, or within a second.
            self._flush_metrics_soon()
            return
        counts = self._take_metrics()
        last = self._last_acked_at
        self._last_acked_at = None

        def txn_fn(txn: Any) -> None:
            self.spool.remove(txn, spooled)
            if letters:
                self.dead_letters.put(txn, letters)
            self.spool.counters.add(txn, counts, now)
            if last is not None:
                txn.put(metrics.LAST_DELIVERY_KEY, str(last).encode(), db=self.store.db("state"))

        self._background(self.store.write, txn_fn, leaving=spooled)

    def _flush_metrics_soon(self) -> None:
        if self._flush_pending:
            return
        self._flush_pending = True
        asyncio.get_running_loop().call_later(1.0, self._flush_metrics)

    def _flush_metrics(self) -> None:
        """Counters (and the last delivery time) kept back by ``_settle``, to the store."""
        self._flush_pending = False
        counts, last = self._take_metrics(), self._last_acked_at
        self._last_acked_at = None
        if not counts and last is None:
            return
        now = time.time()

        def txn_fn(txn: Any) -> None:
            self.spool.counters.add(txn, counts, now)
            if last is not None:
                txn.put(metrics.LAST_DELIVERY_KEY, str(last).encode(), db=self.store.db("state"))

        if not self._executor._shutdown:
            self._background(self.store.write, txn_fn)

    def _emit_recorded_stages(self, events: list[PatternEvent], outcomes: list[Outcome]) -> None:
        """Spans of stages that ran in another process (the hook) and recorded their times."""
        stage = self._s["hook"]
        for ev, out in zip(events, outcomes):
            times = ev.timings.get("hook") if out.acknowledged else None
            if times and len(times) == 2:
                stage.emit_span(times[0], times[1], **{"pattern_tracker.event_id": ev.event_id,
                                                       "pattern_tracker.tool": ev.tool_name or ""})
                stage.observe(max(0.0, times[1] - times[0]))
                stage.count(1, 1)

    def _spill(self, events: list[PatternEvent], reason: str) -> None:
        """Cannot deliver now: the events stay in (or go to) the spool; replay takes them later."""
        now = time.time()
        ids = [ev.event_id for ev in events]
        self._forget(ids)
        self._credits.release(len(events))
        self.summary.spilled += len(events)
        self._s["spill"].count(len(events), len(events))
        self._s["spill"].mark(len(events), **{"pattern_tracker.reason": reason})
        self._m.spilled(reason, len(events))
        self._backlog = self._spilling = True
        self.wake_replay()
        if reason != "circuit_open":
            log.info("%d event(s) kept in the spool for later (%s)", len(events), reason)

        if reason == "retries_exhausted":
            self._tally({"retry.failed_with_retry": len(events)})
        elif reason == "not_retryable":
            self._tally({"retry.failed_without_retry": len(events)})
        counts = self._take_metrics()

        def txn_fn(txn: Any) -> None:
            self.spool.mark_spilled(txn, events, reason, now)
            self.spool.counters.add(txn, counts, now)

        self._background(self.store.write, txn_fn)

    def _on_rejected(self, events: list[PatternEvent]) -> None:
        self._s["circuit_gate"].count(len(events), 0, errors=len(events))
        self._s["circuit_gate"].mark(len(events), error="circuit open")
        self._spill(events, "circuit_open")

    def _graph(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        s = self.settings
        scheduler = AsyncIOScheduler(loop)
        gate = CircuitGate(self.breaker)

        def on_error(exc: Exception) -> None:
            log.error("pipeline graph failed: %s: %s", type(exc).__name__, exc)
            if not done.done():
                done.set_exception(exc)
            # Nothing can flow any more: stop the sources (what they read is in the spool) and
            # release anyone waiting for credits, so the run ends instead of hanging.
            if self._stop is not None:
                self._stop.set()
            self._credits.release(self._credits.limit)

        def on_completed() -> None:
            if not done.done():
                done.set_result(None)

        attempts = retry(self._call, self.policy, gate, scheduler)

        def unit(events: list[PatternEvent]) -> rx.Observable[Any]:
            # The gate is asked when merge starts the unit, not when the batch is formed: merge
            # queues units, and a permit taken before the queue would let batches through after
            # the circuit opened.
            return rx.defer(lambda _: rx.of(events).pipe(circuit_gate(gate, self._on_rejected), ops.flat_map(attempts)))

        self._subject.pipe(
            traced(self._s["validate"], validate(self._on_invalid)),
            traced(self._s["batch"], batch(s.batch_size, s.batch_linger, scheduler)),
            ops.map(unit),
            ops.merge(max_concurrent=s.max_concurrency),
            spill(lambda sp: self._spill(sp.events, sp.reason)),
        ).subscribe(on_next=self._on_step, on_error=on_error, on_completed=on_completed, scheduler=scheduler)

    # -- the backlog -------------------------------------------------------------------------

    async def _wait(self, stop: asyncio.Event, timeout: float) -> None:
        """Sleep until woken (a wake set before the call counts), stopped, or ``timeout``."""
        if not self._wake.is_set() and not stop.is_set():
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        self._wake.clear()

    async def replay(self, stop: asyncio.Event, finish: asyncio.Event, until_empty: bool = False) -> None:
        """Source: feed the spool to the graph, oldest first, whenever the circuit allows.

        Runs until ``stop``. Once ``finish`` is set (the other sources are done, or this is a
        drain) it ends as soon as the spool is empty — or, unless ``until_empty``, when the
        circuit is open and nothing more can be delivered now.
        """
        chunk = self.settings.batch_size
        idle_passes = 0
        last_expiry = 0.0
        while not stop.is_set():
            now = time.time()
            if not await self.io(self.lease.acquire, now):
                if finish.is_set():
                    return
                self._backlog = False  # another process drains the backlog; deliver live events
                await self._wait(stop, self.lease.ttl / 3)
                continue
            if now - last_expiry >= self.settings.replay_poll:
                last_expiry = now
                expired = await self.io(self.spool.expire, now)
                if expired:
                    self._forget(expired)
                    self.summary.expired += len(expired)
                    self._m.expired_events(len(expired))
            state = self.breaker.state()
            due = self.breaker.retry_at()
            if state.state == "forced_open" or (due is not None and now < due):
                if finish.is_set() and (not until_empty or state.state == "forced_open"):
                    return
                wait = (due - now) if due is not None else self.settings.replay_poll
                await self._wait(stop, min(wait, self.settings.replay_poll))
                continue
            pushed, progressed = await self._replay_pass(chunk, stop, state.state == "half_open")
            if pushed == 0:
                if finish.is_set() and not self._inflight and await self.io(self.lease.release, "spool"):
                    return  # the spool is empty and the lease given up, atomically
                if self._backlog and not self._inflight:
                    # Caught up: double-check that nothing arrived in between, then go live.
                    self._backlog = self._spilling = False
                    if await self._pending_entries():
                        self._backlog = True
                        continue
                if finish.is_set() and not self._inflight and not self._backlog:
                    # Left: entries another process has in flight, or none. Nothing more to do here.
                    return
                await self._wait(stop, self.settings.replay_poll)
                continue
            # Wait for this pass's own events to settle (not for live traffic, which may never
            # pause) before the next one.
            while self._from_replay and not stop.is_set():
                await self._wait(stop, self.settings.replay_poll)
            if progressed():
                idle_passes = 0
            else:
                if finish.is_set() and not until_empty:
                    # A whole pass delivered nothing (the service refuses, or the circuit keeps
                    # re-opening): a drain stops here; what is left stays in the spool.
                    return
                idle_passes += 1
                await self._wait(stop, self.policy.get_delay(idle_passes, None))

    async def _pending_entries(self) -> bool:
        entries = await self.io(self.spool.read_batch, 0, self.settings.batch_size * 4)
        return any(not self._busy(e.event.event_id) for _, e in entries)

    async def _replay_pass(self, chunk: int, stop: asyncio.Event, half_open: bool) -> tuple[int, Callable[[], bool]]:
        """Push every spooled event not already in flight, in chain order; returns
        (pushed, did-anything-get-acked)."""
        acked_before = self._acked_since_wake = 0
        cursor = 0
        pushed = 0
        while not stop.is_set():
            entries = await self.io(self.spool.read_batch, cursor, chunk * REPLAY_WINDOW)
            if not entries:
                break
            cursor = entries[-1][0]
            window = chain_order([e.event for _, e in entries if not self._busy(e.event.event_id)])
            for i in range(0, len(window), chunk):
                events = window[i : i + chunk]
                await self._credits.acquire(len(events))
                wanted = len(events)
                events = [ev for ev in events if not self._busy(ev.event_id)]  # changed while we waited
                self._credits.release(wanted - len(events))
                if not events:
                    continue
                self._from_replay.update(ev.event_id for ev in events)
                self.summary.replayed += len(events)
                self._s["replay"].count(len(events), len(events))
                self._s["replay"].mark(len(events))
                self._tally({"spool.replayed": len(events)})
                self._flush_metrics_soon()
                self._push(events)
                pushed += len(events)
                if half_open or stop.is_set():
                    break  # trials: one batch at a time until the circuit closes
            if half_open:
                break
        return pushed, lambda: self._acked_since_wake > acked_before

    # -- run ---------------------------------------------------------------------------------

    async def run(self, sources: Sequence[Source], stop: asyncio.Event, *, drain: bool = False, until_empty: bool = False) -> RunSummary:
        """Run until every source has finished and the backlog is delivered (or ``stop`` is set).

        ``drain=True``: the backlog is the only source; the run ends when the spool is empty,
        or when the circuit is open (unless ``until_empty``).
        """
        loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        self._stop = stop
        done: asyncio.Future[None] = loop.create_future()
        self._graph(loop, done)
        await self.sink.start()
        feed = Feed(self, stop)
        finish = asyncio.Event()
        if drain:
            finish.set()
        # An empty spool at start: live events can flow at once (no older backlog to keep order with).
        if drain is False and await self.io(self.spool.size) == 0:
            self._backlog = False
        replay_task = asyncio.create_task(self.replay(stop, finish, until_empty)) if self.replay_enabled or drain else None
        if replay_task is None:
            self._backlog = False
        try:
            tasks = [asyncio.create_task(src(feed, stop)) for src in sources]
            try:
                results = await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                for t in tasks:
                    t.cancel()
            finish.set()
            self.wake_replay()
            if replay_task is not None:
                await replay_task
            else:
                while self._inflight and not stop.is_set():
                    await self._wait(stop, self.settings.replay_poll)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    raise r
        finally:
            finish.set()
            if replay_task is not None and not replay_task.done():
                replay_task.cancel()
                await asyncio.gather(replay_task, return_exceptions=True)
            self._subject.on_completed()
            await self._finish(done)
        return self.summary

    async def _finish(self, done: asyncio.Future[None]) -> None:
        s = self.settings
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout=s.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown: %d event(s) still in flight after %.1fs; they stay in the spool",
                        len(self._inflight), s.shutdown_timeout)
        except Exception:  # noqa: BLE001 - already logged by the graph
            pass
        for task in list(self._tasks):
            if isinstance(task, asyncio.Task):
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sink.close()
        leftover, last = self._take_metrics(), self._last_acked_at
        if leftover or last is not None:
            def txn_fn(txn: Any) -> None:
                self.spool.counters.add(txn, leftover, time.time())
                if last is not None:
                    txn.put(metrics.LAST_DELIVERY_KEY, str(last).encode(), db=self.store.db("state"))

            await self.io(self.store.write, txn_fn)
        self.summary.left_in_spool = await self.io(self.spool.size)
        self.summary.seconds = time.monotonic() - self._started
        await self.io(self.lease.release)
        self._executor.shutdown(wait=True)
        self.tel.flush()
