"""The running graph in-process: sources → validate → batch → embedded sink → spool acknowledged."""

from __future__ import annotations

import asyncio
import time

import msgspec

from pattern_tracker.model.events import build_event
from pattern_tracker.core.capture import Change
from pattern_tracker.runtime import Feed, Pipeline, RuntimeSettings
from pattern_tracker.state.spool import Spool
from pattern_tracker.core.store import Store
from pattern_tracker.telemetry import Telemetry
from pattern_tracker.sinks.embedded import EmbeddedSink
from pattern_tracker.sinks.lineage_store import LineageStore
from tests.clitools import async_wait_for


def make_pipeline(store: Store, **settings) -> Pipeline:
    return Pipeline(store, EmbeddedSink(LineageStore(store)), Telemetry.disabled(),
                    RuntimeSettings(**{"batch_size": 10, "batch_linger": 0.01, **settings}))


async def test_changes_flow_to_the_embedded_store_in_lineage_order(store: Store) -> None:
    async def source(feed: Feed, stop: asyncio.Event) -> None:
        for i in range(25):
            await feed.changes([Change(path="/t/a.py", code=f"v = {i}\n", occurred_at=float(i))], "watch")
        await feed.changes([Change(path="/t/a.py", code="v = 24\n", occurred_at=99.0)], "watch")  # unchanged

    summary = await make_pipeline(store).run([source], asyncio.Event())
    assert (summary.read, summary.unchanged, summary.delivered, summary.left_in_spool) == (26, 1, 25, 0)
    nodes = LineageStore(store).query("/t/a.py", limit=100)
    assert [n["generation"] for n in nodes] == list(range(1, 26))
    assert nodes[0]["event_type"] == "pattern_created" and nodes[-1]["event_type"] == "pattern_modified"


async def test_invalid_events_are_dead_lettered_not_lost(store: Store) -> None:
    good = build_event(file_path="/g.py", code="1", version=1, parent_pattern_id=None, source="stdin", occurred_at=0)
    bad = msgspec.structs.replace(good, event_id="bad", pattern_id="bad-1", event_type="pattern_modified")

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        await feed.events([good, bad])

    p = make_pipeline(store)
    summary = await p.run([source], asyncio.Event())
    assert (summary.delivered, summary.dead_lettered, summary.left_in_spool) == (1, 1, 0)
    [(_, letter)] = p.dead_letters.list()
    assert letter.event.event_id == "bad" and "needs a parent" in letter.reason and letter.stage == "validate"


async def test_backlog_from_an_earlier_run_is_delivered_first(store: Store) -> None:
    evs = [build_event(file_path=f"/b{i}.py", code="x", version=1, parent_pattern_id=None, source="hook", occurred_at=0)
           for i in range(30)]
    Spool(store).enqueue(evs, time.time())
    summary = await make_pipeline(store).run([], asyncio.Event())
    assert (summary.replayed, summary.delivered, summary.left_in_spool) == (30, 30, 0)
    assert LineageStore(store).count() == 30


async def test_redelivery_is_idempotent(store: Store) -> None:
    ev = build_event(file_path="/r.py", code="x", version=1, parent_pattern_id=None, source="stdin", occurred_at=0)

    pipeline = make_pipeline(store)

    async def twice(feed: Feed, stop: asyncio.Event) -> None:
        await feed.events([ev])
        await async_wait_for(lambda: pipeline.summary.delivered == 1, what="the first delivery")
        await feed.events([ev])

    summary = await pipeline.run([twice], asyncio.Event())
    assert (summary.delivered, summary.already_existed) == (1, 1)
    assert LineageStore(store).count() == 1


async def test_credits_bound_the_events_in_memory(store: Store) -> None:
    p = make_pipeline(store, batch_size=5, max_in_flight_batches=1)
    seen_max = 0

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        nonlocal seen_max
        for i in range(200):
            await feed.changes([Change(path=f"/c{i}.py", code="x", occurred_at=0)], "watch")
            assert p._credits is not None
            seen_max = max(seen_max, p._credits.limit - p._credits.available)

    summary = await p.run([source], asyncio.Event())
    assert summary.delivered == 200
    assert 0 < seen_max <= 10


async def test_stop_event_ends_an_endless_source_and_flushes(store: Store) -> None:
    stop = asyncio.Event()

    async def endless(feed: Feed, stop_: asyncio.Event) -> None:
        i = 0
        while not stop_.is_set():
            await feed.changes([Change(path=f"/e{i}.py", code="x", occurred_at=0)], "watch")
            i += 1
            if i == 50:
                stop.set()
            await asyncio.sleep(0)

    summary = await make_pipeline(store).run([endless], stop)
    assert summary.read == 50 and summary.delivered == 50 and summary.left_in_spool == 0
