"""The group commit's rules: the order wait (pure), and the store thread's drain of the LMDB store."""

from __future__ import annotations

import asyncio
import threading
import time

from pattern_tracker.core.store import Store
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.service.group_commit import HOLD_LIMIT, ORDER_WAIT, BatchWriter, order_wait
from pattern_tracker.sinks.lineage_store import LineageStore
from pattern_tracker.sinks.lineage_threaded import ThreadedLineage


class _Waiting:
    def __init__(self, arrived: float) -> None:
        self.arrived = arrived


def test_order_wait_waits_only_for_earlier_requests_still_read_and_not_for_long() -> None:
    waiting = [_Waiting(10.0), _Waiting(10.2)]
    assert order_wait(waiting, [], 10.3) is None  # nobody else is being read
    assert order_wait(waiting, [10.25], 10.3) is None  # arrived after every waiting batch
    assert abs(order_wait(waiting, [10.1], 10.3) - (10.1 + ORDER_WAIT - 10.3)) < 1e-9
    assert abs(order_wait(waiting, [10.15, 10.05], 10.3) - (10.05 + ORDER_WAIT - 10.3)) < 1e-9
    assert order_wait(waiting, [10.1], 10.1 + ORDER_WAIT) is None  # waited for long enough


def created(pid: str) -> TrackRequest:
    return TrackRequest(event_type="pattern_created", pattern_id=pid, pattern_version="1",
                        file_path=f"/src/{pid}.py", pattern_data={"code": f"# {pid}\n"})


async def test_the_store_thread_takes_every_waiting_batch_when_free_and_the_loop_is_held_briefly(store: Store) -> None:
    """While the store's write lock is held elsewhere, batches queue; ``between_executions`` holds
    the loop at most HOLD_LIMIT; once the lock is free, the waiting batches share one transaction."""
    lineage = ThreadedLineage(LineageStore(store))
    writer = BatchWriter(lineage)
    sizes: list[int] = []
    real = lineage.backend.track_many

    def recorded(reqs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - counts, then the real store
        sizes.append(len(reqs))
        return real(reqs, *args, **kwargs)

    lineage.backend.track_many = recorded  # type: ignore[method-assign]
    release, holding = threading.Event(), threading.Event()

    def hold_the_lock(_txn: object) -> None:
        holding.set()
        release.wait(10)

    other = threading.Thread(target=store.write, args=(hold_the_lock,))
    other.start()
    assert holding.wait(5)
    first = writer.submit([created("a")], time.perf_counter())
    deadline = time.monotonic() + 5
    while not sizes and time.monotonic() < deadline:  # the store thread took it and waits for the lock
        await asyncio.sleep(0.005)
    assert sizes == [1]
    later = [writer.submit([created(pid)], time.perf_counter()) for pid in ("b", "c")]
    t0 = time.perf_counter()
    await writer.between_executions()  # the store thread is "executing" (waiting for the lock): bounded
    assert HOLD_LIMIT * 0.8 <= time.perf_counter() - t0 < HOLD_LIMIT + 0.1
    assert not first.done()
    release.set()
    results = [await asyncio.wait_for(fut, 10) for fut in (first, *later)]
    assert [[r["pattern_id"] for r in res] for res, _ in results] == [["a"], ["b"], ["c"]]
    assert sizes == [1, 2]
    t0 = time.perf_counter()
    await writer.between_executions()  # idle store: no wait
    assert time.perf_counter() - t0 < HOLD_LIMIT / 2
    other.join(5)
    await lineage.close()


async def test_a_failed_transaction_fails_each_of_its_batches(store: Store) -> None:
    lineage = ThreadedLineage(LineageStore(store))
    writer = BatchWriter(lineage)

    def broken(reqs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise OSError("disk gone")

    lineage.backend.track_many = broken  # type: ignore[method-assign]
    futures = [writer.submit([created(pid)], time.perf_counter()) for pid in ("x", "y")]
    for fut in futures:
        try:
            await asyncio.wait_for(fut, 5)
        except OSError as exc:
            assert str(exc) == "disk gone"
        else:
            raise AssertionError("a batch of the failed transaction succeeded")
    await lineage.close()
