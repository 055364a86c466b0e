"""Group commit for the stand-in: batch requests waiting for the lineage store share one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_contract import AsyncLineageBackend, TrackResult
from pattern_tracker.sinks.lineage_threaded import ThreadedLineage

__all__ = ["HOLD_LIMIT", "ORDER_WAIT", "BatchWriter", "order_wait"]

ORDER_WAIT = 0.5  # seconds a transaction may wait for a batch request that arrived before its own
HOLD_LIMIT = 0.05  # seconds the event loop may stand still before decoding while the store thread executes


class _Job(NamedTuple):
    """One batch request waiting for the store."""

    arrived: float  # perf_counter when its handler started (headers read; the body may still be uploading)
    events: Sequence[TrackRequest]
    done: asyncio.Future[tuple[list[TrackResult], float]]


def order_wait(waiting: Sequence[_Job], reading: Iterable[float], now: float) -> float | None:
    """How long a transaction of ``waiting`` must still wait for a request that arrived before one
    of its batches and is still being read (``reading``: when each such request arrived), or None
    when it may start now. Each such request is waited for at most ``ORDER_WAIT`` after it arrived."""
    latest = max(job.arrived for job in waiting)
    earlier = [t for t in reading if t < latest and now - t < ORDER_WAIT]
    return min(earlier) + ORDER_WAIT - now if earlier else None


class BatchWriter:
    """Runs the batches that wait for the lineage store together, in ONE write transaction.

    Why: a commit writes every B-tree page it touched and syncs the file, whatever the number of
    events; batches that arrive while a commit runs share the next one (fewer page writes and
    syncs) instead of queueing one transaction each. Each batch gets the results it would get alone
    after the ones before it; a failing transaction fails every batch in it, as it would have
    failed each on its own.

    Batches run in the order their requests arrived, not the order their bodies finished
    uploading: a client with several batches in flight sends a parent's batch before its child's,
    and the child's body can finish first. A transaction starts only once the requests that arrived
    before its batches are read too (:func:`order_wait`).

    Who starts the next transaction depends on the store:

    * the embedded LMDB store (:class:`~pattern_tracker.sinks.lineage_threaded.ThreadedLineage`):
      its own thread takes whatever waits the moment it is free, and hands the results to the
      loop. Why: when the loop started each transaction, the store thread sat idle after every
      commit until the loop got round to it (behind request bodies to decode, answers to write):
      measured, ~60 µs of every event's ~160 µs in serve's ingest benchmark.
    * a store awaited on the loop (PostgreSQL): a task on the loop, one transaction at a time.
    """

    def __init__(self, lineage: AsyncLineageBackend) -> None:
        self._lineage = lineage
        self._threaded = lineage if isinstance(lineage, ThreadedLineage) else None
        self._waiting: list[_Job] = []
        self._reading: dict[object, float] = {}  # requests not yet submitted -> when they arrived
        # the store thread's side (LMDB)
        self._cond = threading.Condition()  # guards _waiting, _reading, _queued when the store thread drains
        self._queued = False  # a drain of the waiting batches is queued on the store thread
        self._idle = threading.Event()  # clear while the store thread executes a transaction's events
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        # the loop's side (PostgreSQL)
        self._drainer: asyncio.Task[None] | None = None
        self._not_executing = asyncio.Event()
        self._not_executing.set()
        self._read = asyncio.Event()  # set whenever a request being read is submitted or answered

    @contextlib.contextmanager
    def reading(self, arrived: float) -> Iterator[None]:
        """Count a batch request (arrived at ``arrived``) as being read until it is submitted or answered."""
        token = object()
        with self._cond:
            self._reading[token] = arrived
        try:
            yield
        finally:
            with self._cond:
                del self._reading[token]
                self._cond.notify_all()
            self._read.set()

    def submit(self, events: Sequence[TrackRequest],
               arrived: float) -> asyncio.Future[tuple[list[TrackResult], float]]:
        """A future of the results of ``events`` and the store's time per event (ms) of their transaction."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[list[TrackResult], float]] = loop.create_future()
        with self._cond:
            self._waiting.append(_Job(arrived, events, done))
            queue = self._threaded is not None and not self._queued
            self._queued = self._queued or queue
        if self._threaded is not None:
            if queue:
                self._loop = loop
                self._threaded.in_store_thread(self._drain_in_store_thread)
        elif self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return done

    async def between_executions(self) -> None:
        """Return once the store thread is committing or idle, not executing events.

        Why: executing events is Python work on the store thread that releases the GIL at every
        LMDB call, while the commit waits on the disk without it. Decoding a 1 MB request body
        holds the GIL for milliseconds; done during an execution it stalls the store thread (the
        bottleneck) at its next LMDB call, done during a commit it costs the store thread nothing.
        For the LMDB store the loop stands still (without the GIL) until then, at most
        ``HOLD_LIMIT``: awaiting instead would let the loop's other work take the GIL meanwhile.
        """
        if self._threaded is not None:
            self._idle.wait(HOLD_LIMIT)
        else:
            await self._not_executing.wait()

    # -- the store thread drains (LMDB) ------------------------------------------------------------

    def _drain_in_store_thread(self) -> None:
        """Run on the store's thread: everything waiting now, in one transaction."""
        with self._cond:
            self._queued = False
            while self._waiting and (wait := order_wait(self._waiting, self._reading.values(),
                                                        time.perf_counter())) is not None:
                self._cond.wait(wait)
            jobs, self._waiting = self._waiting, []
        if not jobs:
            return
        jobs.sort(key=lambda job: job.arrived)
        events = [ev for job in jobs for ev in job.events]
        assert self._threaded is not None and self._loop is not None
        t0 = time.perf_counter()
        self._idle.clear()
        try:
            results = self._threaded.backend.track_many(events, before_commit=self._idle.set)
        except Exception as exc:  # noqa: BLE001 - handed to every batch of the transaction
            self._to_loop(_fail, jobs, exc)
            return
        finally:
            self._idle.set()
        self._to_loop(_hand_out, jobs, results, round((time.perf_counter() - t0) * 1000 / len(events), 2))

    def _to_loop(self, fn: object, *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown): nobody waits
            self._loop.call_soon_threadsafe(fn, *args)  # type: ignore[arg-type]

    # -- a task on the loop drains (PostgreSQL) ----------------------------------------------------

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._earlier_requests_read()
                jobs, self._waiting = self._waiting, []
                jobs.sort(key=lambda job: job.arrived)
                await self._commit(jobs)
        finally:
            self._drainer = None

    async def _earlier_requests_read(self) -> None:
        """Wait while a request that arrived before a waiting batch, under ``ORDER_WAIT`` ago, is being read."""
        while (wait := order_wait(self._waiting, self._reading.values(), time.perf_counter())) is not None:
            self._read.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._read.wait(), wait)

    async def _commit(self, jobs: list[_Job]) -> None:
        events = [ev for job in jobs for ev in job.events]
        executed = functools.partial(asyncio.get_running_loop().call_soon_threadsafe, self._not_executing.set)
        t0 = time.perf_counter()
        self._not_executing.clear()
        try:
            results = await self._lineage.track_many(events, before_commit=executed)
        except asyncio.CancelledError:  # the loop is shutting down
            for job in jobs:
                job.done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every batch of the transaction
            _fail(jobs, exc)
            return
        finally:
            self._not_executing.set()
        _hand_out(jobs, results, round((time.perf_counter() - t0) * 1000 / len(events), 2))


def _hand_out(jobs: list[_Job], results: list[TrackResult], per_event: float) -> None:
    """Give each batch of a transaction its slice of the results."""
    offset = 0
    for job in jobs:
        if not job.done.done():  # its request may have timed out meanwhile
            job.done.set_result((results[offset:offset + len(job.events)], per_event))
        offset += len(job.events)


def _fail(jobs: list[_Job], exc: Exception) -> None:
    """A transaction failed: so does every batch in it."""
    for job in jobs:
        if not job.done.done():
            job.done.set_exception(exc)
