"""Group commit for the stand-in: batch requests waiting for the lineage store share one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_contract import AsyncLineageBackend, TrackResult

__all__ = ["ORDER_WAIT", "BatchWriter"]

ORDER_WAIT = 0.5  # seconds a transaction may wait for a batch request that arrived before its own

class _Job(NamedTuple):
    """One batch request waiting for the store."""

    arrived: float  # perf_counter when its handler started (headers read; the body may still be uploading)
    events: Sequence[TrackRequest]
    done: asyncio.Future[tuple[list[TrackResult], float]]


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
    before its batches are read too (waiting at most ``ORDER_WAIT`` after such a request arrived,
    so a stalled upload holds nobody up for long).
    """

    def __init__(self, lineage: AsyncLineageBackend) -> None:
        self._lineage = lineage
        self._waiting: list[_Job] = []
        self._drainer: asyncio.Task[None] | None = None
        self._not_executing = asyncio.Event()
        self._not_executing.set()
        self._reading: dict[object, float] = {}  # requests not yet submitted -> when they arrived
        self._read = asyncio.Event()  # set whenever one of them is submitted or answered

    @contextlib.contextmanager
    def reading(self, arrived: float) -> Iterator[None]:
        """Count a batch request (arrived at ``arrived``) as being read until it is submitted or answered."""
        token = object()
        self._reading[token] = arrived
        try:
            yield
        finally:
            del self._reading[token]
            self._read.set()

    def submit(self, events: Sequence[TrackRequest],
               arrived: float) -> asyncio.Future[tuple[list[TrackResult], float]]:
        """A future of the results of ``events`` and the store's time per event (ms) of their transaction."""
        done: asyncio.Future[tuple[list[TrackResult], float]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Job(arrived, events, done))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return done

    async def between_executions(self) -> None:
        """Return once the store thread is committing or idle, not executing events.

        Why: executing events is Python work on the store thread that releases the GIL at every
        LMDB call, while the commit waits on the disk without it. Decoding a 1 MB request body
        holds the GIL for milliseconds; done during an execution it stalls the store thread (the
        bottleneck) at its next LMDB call, done during a commit it costs the store thread nothing.
        """
        await self._not_executing.wait()

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
        while True:
            latest = max(job.arrived for job in self._waiting)
            now = time.perf_counter()
            earlier = [t for t in self._reading.values() if t < latest and now - t < ORDER_WAIT]
            if not earlier:
                return
            self._read.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._read.wait(), min(earlier) + ORDER_WAIT - now)

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
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc)
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
