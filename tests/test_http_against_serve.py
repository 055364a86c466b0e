"""The HTTP sink against our real `serve` app (in-process, 127.0.0.1, ephemeral port), on each lineage store."""

from __future__ import annotations

import msgspec

from pattern_tracker.model.events import build_event
from pattern_tracker.sinks.http import HttpSink
from tests.lineage_backends import every_backend  # noqa: F401 - every test on both stores


def chain(path: str, n: int) -> list:
    events, parent = [], None
    for v in range(1, n + 1):
        ev = build_event(file_path=path, code=f"v{v}", version=v, parent_pattern_id=parent, source="watch", occurred_at=0)
        events.append(ev)
        parent = ev.pattern_id
    return events


async def test_redelivery_is_already_exists_without_a_duplicate(serve_url: str, stored) -> None:
    events = chain("/h/a.py", 3)
    async with HttpSink(serve_url) as sink:
        first = await sink.deliver(events)  # parent and child in one batch → sequential mode
        again = await sink.deliver(events)
    assert [o.status for o in first] == ["delivered"] * 3
    assert [o.status for o in again] == ["already_exists"] * 3
    assert await stored.count() == 3
    assert [a["generation"] for a in (await stored.ancestry(events[2].pattern_id))["ancestors"]] == [3, 2, 1]


async def test_one_invalid_event_in_a_batch_is_permanent_alone(serve_url: str, stored) -> None:
    good = chain("/h/b.py", 2) + chain("/h/c.py", 1)
    bad = msgspec.structs.replace(good[2], event_id="bad", pattern_id="bad-1", event_type="pattern_merged",
                                  parent_pattern_ids=[good[0].pattern_id])  # a merge needs two parents: 400
    async with HttpSink(serve_url) as sink:
        outcomes = await sink.deliver([good[0], bad, good[1], good[2]])
    assert [o.status for o in outcomes] == ["delivered", "permanent", "delivered", "delivered"]
    assert outcomes[1].http_status == 400 and "2 parent" in outcomes[1].reason
    assert await stored.count() == 3


async def test_missing_parent_is_retryable_for_that_event(serve_url: str, stored) -> None:
    orphan = chain("/h/d.py", 2)[1]
    fine = chain("/h/e.py", 1)[0]
    async with HttpSink(serve_url) as sink:
        outcomes = await sink.deliver([fine, orphan])
    assert [(o.status, o.error_class) for o in outcomes] == [("delivered", None), ("retryable", "parent_missing")]


async def test_health_of_serve_is_available(serve_url: str) -> None:
    async with HttpSink(serve_url) as sink:
        health = await sink.health()
    assert health.available and health.status == "healthy"
