"""The running graph: sources → validate → batch → deliver → acknowledge, on asyncio + Rx.

Everything a source reads is made durable first (``Feed`` → ``Ingest`` → spool) and only then
pushed into the Rx graph, so a SIGTERM or a crash at any point loses nothing: the spool backlog
is replayed, oldest first, at the next start. Memory is bounded by credits taken at the source
(Rx has no backpressure; merge's queue is unbounded) and returned when a batch is settled.
Concurrency of deliveries is bounded by ``merge(max_concurrent=api.max_concurrency)``.
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

from operators.batch import batch
from operators.traced import traced
from operators.validate import validate
from pipeline.dead_letter import DeadLetter, DeadLetters
from pipeline.events import PatternEvent, SourceName
from pipeline.hook_payload import Change
from pipeline.ingest import Ingest
from pipeline.spool import Spool
from pipeline.store import Store
from pipeline.telemetry import Telemetry
from sinks.base import Outcome, Sink

log = logging.getLogger("pattern_tracker.runtime")
T = TypeVar("T")

BACKLOG_CHUNK = 500


class RuntimeSettings(msgspec.Struct, kw_only=True, frozen=True):
    batch_size: int = 100
    batch_linger: float = 0.05
    max_in_flight_batches: int = 4
    max_concurrency: int = 4
    shutdown_timeout: float = 10.0


class RunSummary(msgspec.Struct, kw_only=True):
    read: int = 0
    unchanged: int = 0
    delivered: int = 0
    already_existed: int = 0
    retryable: int = 0
    dead_lettered: int = 0
    left_in_spool: int = 0
    seconds: float = 0.0


class Credits:
    """A counting gate for events in memory; sources wait here when the graph is full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.available = limit
        self._changed = asyncio.Event()

    async def acquire(self, n: int) -> None:
        while self.available < n:
            self._changed.clear()
            await self._changed.wait()
        self.available -= n

    def release(self, n: int) -> None:
        self.available = min(self.limit, self.available + n)
        self._changed.set()


class Feed:
    """What sources get: a way to hand over changes or events, which become durable first."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._p = pipeline

    async def changes(self, changes: Sequence[Change], source: SourceName) -> int:
        """Version, spool and push ``changes``; returns how many became events (unchanged give none)."""
        p = self._p
        events = await p.io(p.ingest.accept_changes, changes, source, time.time())
        p.summary.read += len(changes)
        p.summary.unchanged += len(changes) - len(events)
        await p.push(events)
        return len(events)

    async def events(self, events: Sequence[PatternEvent], durable: bool = False) -> int:
        """Push fully formed events; ``durable=False`` queues them in the spool first."""
        p = self._p
        if not durable:
            events = await p.io(p.ingest.accept_events, events, time.time())
        p.summary.read += len(events)
        await p.push(list(events))
        return len(events)


Source = Callable[[Feed, asyncio.Event], Awaitable[None]]


class Pipeline:
    def __init__(self, store: Store, sink: Sink, telemetry: Telemetry, settings: RuntimeSettings) -> None:
        self.store = store
        self.sink = sink
        self.tel = telemetry
        self.settings = settings
        self.spool = Spool(store)
        self.dead_letters = DeadLetters(store)
        self.ingest = Ingest(store, self.spool)
        self.summary = RunSummary()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pattern-tracker-store")
        self._subject: Subject[PatternEvent] = Subject()
        self._credits: Credits | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._s_source = telemetry.stage("source")
        self._s_validate = telemetry.stage("validate")
        self._s_batch = telemetry.stage("batch")
        self._s_deliver = telemetry.stage("deliver")
        self._s_dead = telemetry.stage("dead_letter")
        self.last_delivery_at: float | None = None

    # -- plumbing ----------------------------------------------------------------------------

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store thread: LMDB commits stay off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def push(self, events: list[PatternEvent]) -> None:
        assert self._credits is not None, "push() before run()"
        step = max(1, self._credits.limit)
        for i in range(0, len(events), step):
            chunk = events[i : i + step]
            await self._credits.acquire(len(chunk))
            self._s_source.count(len(chunk), len(chunk))
            for ev in chunk:
                self._subject.on_next(ev)

    # -- the graph ---------------------------------------------------------------------------

    def _on_invalid(self, ev: PatternEvent, reason: str) -> None:
        letter = DeadLetter(event=ev, reason=reason, stage="validate", error_class="validation", failed_at=time.time())
        log.warning("event %s rejected by validation: %s", ev.event_id, reason)
        self.summary.dead_lettered += 1
        self._s_validate.count(errors=1)
        self._s_dead.count(1, 1)

        def move(txn: Any) -> None:
            self.dead_letters.put(txn, [letter])
            self.spool.remove(txn, [ev.event_id])

        self._executor.submit(self.store.write, move)
        assert self._credits is not None
        self._credits.release(1)

    async def _deliver(self, events: list[PatternEvent]) -> None:
        """Deliver one batch and settle every event in it. Never raises (errors are per batch)."""
        started = time.perf_counter()
        try:
            with self._s_deliver.span(**{"pattern_tracker.batch.size": len(events), "pattern_tracker.sink": self.sink.name}):
                outcomes = await self.sink.deliver(events)
            if len(outcomes) != len(events):
                raise RuntimeError(f"sink {self.sink.name} returned {len(outcomes)} outcomes for {len(events)} events")
            await self.io(self._settle, events, outcomes, time.perf_counter() - started)
        except asyncio.CancelledError:
            # Only the runtime cancels deliveries (shutdown deadline): the events stay in the spool.
            self._s_deliver.record(len(events), 0, errors=len(events), duration_s=time.perf_counter() - started)
        except Exception:  # noqa: BLE001 - contained per batch; the events stay in the spool
            log.exception("delivery of a batch of %d events failed; they stay in the spool", len(events))
            self.summary.retryable += len(events)
            self._s_deliver.record(len(events), 0, errors=len(events), duration_s=time.perf_counter() - started)
        finally:
            assert self._credits is not None
            self._credits.release(len(events))

    def _settle(self, events: list[PatternEvent], outcomes: list[Outcome], duration_s: float) -> None:
        """Acknowledged → out of the spool; permanent → dead letter; retryable → stays spooled."""
        acked: list[str] = []
        letters: list[DeadLetter] = []
        now = time.time()
        retryable = 0
        for ev, out in zip(events, outcomes):
            if out.acknowledged:
                acked.append(ev.event_id)
                if out.status == "already_exists":
                    self.summary.already_existed += 1
                else:
                    self.summary.delivered += 1
            elif out.status == "permanent":
                letters.append(
                    DeadLetter(event=ev, reason=out.reason, http_status=out.http_status, error_class=out.error_class, failed_at=now)
                )
            else:
                retryable += 1

        def txn_fn(txn: Any) -> None:
            self.spool.remove(txn, acked)
            if letters:
                self.dead_letters.put(txn, letters)
                self.spool.remove(txn, [letter.event.event_id for letter in letters])

        if acked or letters:
            self.store.write(txn_fn)
        if acked:
            self.last_delivery_at = now
        self.summary.retryable += retryable
        self.summary.dead_lettered += len(letters)
        self._s_deliver.record(len(events), len(acked), errors=retryable + len(letters), duration_s=duration_s)
        if letters:
            self._s_dead.count(len(letters), len(letters))
            for letter in letters:
                log.warning("event %s dead-lettered: %s", letter.event.event_id, letter.reason)

    def _graph(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        s = self.settings
        scheduler = AsyncIOScheduler(loop)

        def start_delivery(events: list[PatternEvent]) -> asyncio.Future[None]:
            task = asyncio.ensure_future(self._deliver(events))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return task

        def deliver_later(events: list[PatternEvent]) -> rx.Observable[None]:
            return rx.defer(lambda _: rx.from_future(start_delivery(events)))

        def on_error(exc: Exception) -> None:
            if not done.done():
                done.set_exception(exc)

        def on_completed() -> None:
            if not done.done():
                done.set_result(None)

        self._subject.pipe(
            traced(self._s_validate, validate(self._on_invalid)),
            traced(self._s_batch, batch(s.batch_size, s.batch_linger, scheduler)),
            ops.map(deliver_later),
            ops.merge(max_concurrent=s.max_concurrency),
        ).subscribe(on_error=on_error, on_completed=on_completed, scheduler=scheduler)

    # -- run ---------------------------------------------------------------------------------

    async def backlog(self, feed: Feed, stop: asyncio.Event) -> None:
        """Source: the spool's backlog from earlier runs (or crashes), oldest first."""
        upto = await self.io(self.spool.last_seq)
        after = 0
        while not stop.is_set():
            entries = await self.io(self.spool.read_batch, after, BACKLOG_CHUNK, upto)
            if not entries:
                return
            after = entries[-1][0]
            await feed.events([entry.event for _, entry in entries], durable=True)

    async def run(self, sources: Sequence[Source], stop: asyncio.Event) -> RunSummary:
        """Run until every source has finished (or ``stop`` is set), then flush and settle."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        s = self.settings
        self._credits = Credits(s.batch_size * (s.max_in_flight_batches + 1))
        done: asyncio.Future[None] = loop.create_future()
        self._graph(loop, done)
        await self.sink.start()
        feed = Feed(self)
        try:
            await self.backlog(feed, stop)
            tasks = [asyncio.create_task(src(feed, stop)) for src in sources]
            try:
                results = await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                for t in tasks:
                    t.cancel()
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                    raise r
        finally:
            self._subject.on_completed()
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout=s.shutdown_timeout)
            except TimeoutError:
                log.warning("shutdown: %d deliveries still in flight after %.1fs; their events stay in the spool",
                            len(self._tasks), s.shutdown_timeout)
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.sink.close()
            self.summary.left_in_spool = await self.io(self.spool.size)
            self.summary.seconds = time.monotonic() - started
            self._executor.shutdown(wait=True)
            self.tel.flush()
        return self.summary
