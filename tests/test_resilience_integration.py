"""Resilience over real HTTP: the pipeline against our `serve` app with injected faults."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from pattern_tracker.operators.backoff import ExponentialBackoff
from pattern_tracker.operators.breaker import BreakerSettings
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.core.capture import Change
from pattern_tracker.runtime import Feed, Pipeline, RuntimeSettings
from pattern_tracker.state.spool import Spool, SpoolLimits
from pattern_tracker.core.store import MIB, Store
from pattern_tracker.telemetry import Telemetry
from pattern_tracker.sinks.http import HttpSink
from tests.clitools import free_port
from tests.servetools import Faults, unavailable


def client_pipeline(
    tmp_path, url: str, *, recovery: float, attempts: int = 2, base: float = 0.05, max_delay: float = 1.0
) -> tuple[Pipeline, Store]:
    store = Store.open(tmp_path / "client", map_size=64 * MIB)
    breaker = SharedBreaker(store, BreakerSettings(failure_threshold=5, recovery_timeout=recovery, half_open_attempts=3))
    pipeline = Pipeline(
        store,
        HttpSink(url, total_timeout=5),
        Telemetry.disabled(),
        RuntimeSettings(batch_size=10, batch_linger=0.02, max_concurrency=1, replay_poll=0.2),
        spool=Spool(store, SpoolLimits(bound=10_000)),
        breaker=breaker,
        policy=ExponentialBackoff(max_attempts=attempts, base_delay=base, max_delay=max_delay, jitter_factor=0.1),
    )
    return pipeline, store


async def test_outage_opens_the_circuit_spills_and_drains_with_nothing_lost(tmp_path, serve_factory, lineage) -> None:
    faults = Faults()
    url = await serve_factory(fault_hook=faults)
    pipeline, store = client_pipeline(tmp_path, url, recovery=1.0)
    transitions: list[tuple[float, str, str]] = []
    pipeline.breaker.on_transition = lambda old, new: transitions.append((time.monotonic(), old, new))
    t0 = time.monotonic()

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        for i in range(150):
            elapsed = time.monotonic() - t0
            faults.mode = unavailable if 1.0 <= elapsed < 6.0 else None  # a 5 s outage mid-stream
            await feed.changes([Change(path=f"/proj/f{i % 40}.py", code=f"v{i}", occurred_at=time.time())], "watch")
            await asyncio.sleep(0.04)
        faults.mode = None

    try:
        summary = await asyncio.wait_for(pipeline.run([source], asyncio.Event()), timeout=60)
    finally:
        store.close()

    # The circuit opened during the outage, half-opened after the recovery timeout, and closed.
    states = [new for _, _, new in transitions]
    assert "open" in states and states[-1] == "closed", transitions
    opened = [t for t, _, new in transitions if new == "open"]
    # Nothing was sent while it was open: every POST falls outside [opened, opened + recovery).
    for t_open in opened:
        assert not [p for p in faults.posts if t_open + 0.01 < p < t_open + 1.0 - 0.05], (t_open, faults.posts)
    # 5 consecutive failed calls opened it the first time.
    first_open = opened[0]
    failed_before = [p for p in faults.posts if p <= first_open]
    assert len(failed_before) >= 5
    # Events spilled, were replayed, and every one is on the server exactly once.
    assert summary.spilled > 0 and summary.replayed > 0
    assert summary.left_in_spool == 0 and summary.dead_lettered == 0
    assert summary.delivered + summary.already_existed >= 150
    nodes = lineage.query(None, limit=10_000)
    assert len(nodes) == 150 == len({(n["pattern_id"], n["pattern_version"]) for n in nodes})
    # The chains are whole: every version's parent is the previous version of that file.
    by_file: dict[str, list[dict]] = {}
    for n in nodes:
        by_file.setdefault(n["file_path"], []).append(n)
    for chain in by_file.values():
        chain.sort(key=lambda n: int(n["pattern_version"]))
        assert [n["generation"] for n in chain] == list(range(1, len(chain) + 1))


async def test_retry_after_is_honoured(tmp_path, serve_factory, lineage) -> None:
    faults = Faults()
    answered: list[int] = []

    async def rate_limited_once(_: web.Request) -> web.StreamResponse | None:
        if not answered:
            answered.append(429)
            return web.json_response({"detail": "Rate limit exceeded"}, status=429, headers={"Retry-After": "2"})
        return None

    faults.mode = rate_limited_once
    url = await serve_factory(fault_hook=faults)
    pipeline, store = client_pipeline(tmp_path, url, recovery=60, attempts=3, base=0.01, max_delay=30)

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        await feed.changes([Change(path="/r/a.py", code="x", occurred_at=time.time())], "watch")

    try:
        summary = await asyncio.wait_for(pipeline.run([source], asyncio.Event()), timeout=30)
    finally:
        store.close()
    assert summary.delivered == 1 and summary.retried == 1
    assert len(faults.posts) == 2 and faults.posts[1] - faults.posts[0] >= 2.0
    assert lineage.count() == 1


async def test_connection_refused_spills_and_a_later_run_delivers(tmp_path, serve_factory, lineage) -> None:
    # Nothing listens on this port (taken free, then closed): every attempt is a refused connection.
    dead_port = free_port()
    pipeline, store = client_pipeline(tmp_path, f"http://127.0.0.1:{dead_port}", recovery=60, attempts=2, base=0.01)

    async def source(feed: Feed, stop: asyncio.Event) -> None:
        await feed.changes([Change(path=f"/c/{i}.py", code="x", occurred_at=time.time()) for i in range(30)], "watch")

    summary = await asyncio.wait_for(pipeline.run([source], asyncio.Event()), timeout=30)
    store.close()
    assert summary.left_in_spool == 30 and summary.delivered == 0 and summary.spilled >= 30

    url = await serve_factory()
    pipeline, store = client_pipeline(tmp_path, url, recovery=60)
    pipeline.breaker.reset()  # an operator's `circuit reset` after the service is back
    try:
        again = await asyncio.wait_for(pipeline.run([], asyncio.Event(), drain=True), timeout=30)
    finally:
        store.close()
    assert again.delivered == 30 and again.left_in_spool == 0
    assert lineage.count() == 30
