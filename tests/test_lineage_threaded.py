"""ThreadedLineage: the event loop stands still while a write executes, never for long."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

from pattern_tracker.core.store import Store
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_store import LineageStore
from pattern_tracker.sinks.lineage_threaded import HOLD_LIMIT, ThreadedLineage


def created(pid: str) -> TrackRequest:
    return TrackRequest(event_type="pattern_created", pattern_id=pid, pattern_version="1",
                        file_path="/src/a.py", pattern_data={"code": f"# {pid}\n"})


async def test_a_write_waiting_for_the_lock_holds_the_loop_no_longer_than_the_limit(store: Store) -> None:
    lineage = ThreadedLineage(LineageStore(store))
    release, holding = threading.Event(), threading.Event()

    def hold_the_lock(_txn: object) -> None:
        holding.set()
        release.wait(10)

    other = threading.Thread(target=store.write, args=(hold_the_lock,))
    other.start()
    assert holding.wait(5)
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    write = asyncio.create_task(lineage.track_many([created("p1")]))
    await asyncio.sleep(0.5)  # the write waits for the lock all along; the loop must go on meanwhile
    assert not write.done()
    assert max(gaps) < HOLD_LIMIT + 0.15, max(gaps)
    assert len(gaps) > 15  # the loop ran through the wait
    release.set()
    [result] = await asyncio.wait_for(write, 10)
    assert result["pattern_id"] == "p1"
    ticker.cancel()
    other.join(5)
    await lineage.close()


async def test_a_write_that_fails_before_its_commit_frees_the_loop_at_once(store: Store) -> None:
    lineage = ThreadedLineage(LineageStore(store))

    def events() -> Iterator[TrackRequest]:
        time.sleep(0.01)  # the loop is standing by now
        raise RuntimeError("boom")
        yield created("p1")

    t0 = time.perf_counter()
    try:
        await lineage.track_many(events())
    except RuntimeError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the failure was not raised")
    assert time.perf_counter() - t0 < HOLD_LIMIT
    assert await lineage.count() == 0
    await lineage.close()
