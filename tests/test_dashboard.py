"""The operations dashboard without a browser: the history's ring buffer and derived points (pure),
its refill from the store's minute buckets, the document over a real store, the HTTP face on a
real status server, and the resolved incidents the alerter keeps for it.
(The page itself, in real Chromium: tests/test_web_dashboard.py.)"""

from __future__ import annotations

import shlex
from typing import Any

import aiohttp
import pytest

from pattern_tracker.cli.app import build_parser
from pattern_tracker.composition import breaker_for, spool_for
from pattern_tracker.core import metrics
from pattern_tracker.core.counters import BUCKET_SECONDS, Counters
from pattern_tracker.settings.config import load_config
from pattern_tracker.usecases.alerting import RESOLVED_KEPT, Alerter, load_resolved
from pattern_tracker.usecases.dashboard import COMMANDS, observe, origin_for, read_buckets, read_counts
from pattern_tracker.usecases.dashboard_history import History, Sample, columns, derive, refill
from pattern_tracker.usecases.dashboard_sampler import Sampler
from pattern_tracker.usecases.health import error_metrics
from pattern_tracker.web.assets import CSP
from pattern_tracker.web.status_server import StatusServer


def sample(t: float, size: int | None = 0, circuit: str | None = "closed", **counts: int) -> Sample:
    return Sample(t=t, counts={k.replace("__", "."): v for k, v in counts.items()}, spool_size=size,
                  spool_oldest_age=None if not size else 1.0, circuit=circuit)


def hist_counts(seconds: list[float]) -> dict[str, int]:
    out: dict[str, int] = {}
    metrics.observe(out, "delivery", seconds)
    return out


# ---------------------------------------------------------------------------------------
# The history (pure)


def test_rates_and_percentiles_come_from_successive_samples() -> None:
    first = Sample(t=100.0, counts={"events.delivered": 10, **hist_counts([0.004] * 10)})
    later = Sample(t=110.0, counts={"events.delivered": 40, "events.already_existed": 10,
                                    **{k: v for k, v in _added(hist_counts([0.004] * 10),
                                                               hist_counts([0.004] * 98 + [0.2] * 2)).items()},
                                    "requests.failed.timeout": 3})
    p = derive(later, first)
    assert p.delivered_per_s == 4.0  # (30 delivered + 10 already there) / 10 s
    assert (p.p50_ms, p.p99_ms) == (5, 250)  # the bucket bounds of the calls made between the two samples
    assert p.failed_per_min == {"timeout": 18.0}  # 3 in 10 s
    assert derive(first, None).delivered_per_s is None  # nothing to compare with: unknown, not 0


def _added(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def test_a_counter_that_went_down_makes_the_point_unknown_not_negative() -> None:
    p = derive(sample(20, events__delivered=5), sample(10, events__delivered=50))  # buckets were pruned
    assert p.delivered_per_s is None and p.p50_ms is None and p.failed_per_min == {}
    gone = derive(sample(20), sample(10, requests__failed__timeout=4))
    assert gone.delivered_per_s is None


def test_the_ring_buffer_keeps_the_last_span_in_order_and_answers_since() -> None:
    h = History(span=60, rate_window=10)
    for i in range(100):  # a sample every 2 s for 200 s
        h.add(sample(1000 + 2 * i, size=i, events__delivered=3 * i))
    points = h.points()
    assert points[0].t == 1198 - 60 and points[-1].t == 1198 and len(points) == 31
    assert all(p.delivered_per_s == 1.5 for p in points)  # 3 events per 2 s, over the 10 s window
    assert [p.t for p in h.points(since=1194)] == [1196, 1198]
    assert h.points(since=5000) == []
    assert h.add(sample(1198, size=1)) is None and h.add(sample(1100, size=1)) is None  # time never goes back
    assert h.latest() is not None and h.latest().spool_size == 99


def test_the_rate_window_looks_back_at_most_rate_window_seconds() -> None:
    h = History(span=600, rate_window=10)
    h.add(sample(0, events__delivered=0))
    h.add(sample(2, events__delivered=100))  # a burst
    for t in range(4, 30, 2):
        h.add(sample(t, events__delivered=100))
    rates = {p.t: p.delivered_per_s for p in h.points()}
    assert rates[2] == 50.0 and rates[10] == 10.0  # the burst, averaged over what the window holds
    assert rates[14] == 0.0  # 10 s after the burst it has left the window


def test_columns_align_every_series_and_error_class_on_time() -> None:
    h = History(span=600, rate_window=2)
    h.add(sample(0))
    h.add(sample(2, size=3, circuit="open", requests__failed__connection=2))
    h.add(sample(4, size=5, circuit="open", requests__failed__connection=2, requests__failed__timeout=1))
    cols = columns(h.points())
    assert cols["t"] == [0, 2, 4] and cols["spool_size"] == [0, 3, 5] and cols["circuit"] == ["closed", "open", "open"]
    assert cols["failed_per_min"] == {"connection": [None, 60.0, 0.0], "timeout": [None, None, 30.0]}


def test_refill_builds_cumulative_minute_samples_without_gauges() -> None:
    origin = 60.0 * 1000
    per_bucket = {int(origin): {"events.delivered": 6}, int(origin) + 120: {"events.delivered": 12}}
    samples = refill(per_bucket, origin, origin + 200)
    assert [s.t for s in samples] == [origin + 60, origin + 120, origin + 180]
    assert [s.counts.get("events.delivered", 0) for s in samples] == [6, 6, 18]
    assert all(s.spool_size is None for s in samples)
    h = History(span=3600)
    h.extend(samples)
    assert [p.delivered_per_s for p in h.points()] == [None, 0.0, 0.2]


# ---------------------------------------------------------------------------------------
# Over a real store


def config(store: Any, **env: str) -> Any:
    return load_config(env={"PATTERN_TRACKER_DATA_DIR": str(store.path), **env}).config


def test_counters_by_bucket_and_a_window_read_the_same_buckets(store) -> None:
    c = Counters(store)
    base = 1_000_000 * BUCKET_SECONDS
    for minute in range(90):
        c.bump({"events.delivered": minute + 1, "requests.total": 1}, base + minute * BUCKET_SECONDS)
    since = base + 30 * BUCKET_SECONDS + 5
    per = c.by_bucket(since, prefix="events.")
    assert sorted(per) == [base + m * BUCKET_SECONDS for m in range(30, 90)]
    assert sum(v["events.delivered"] for v in per.values()) == c.totals(since, prefix="events.")["events.delivered"]
    assert c.totals(since)["requests.total"] == 60 and c.totals()["requests.total"] == 90


def test_refill_and_live_samples_agree_with_the_store(store) -> None:
    now = 2_000_000.0 * BUCKET_SECONDS + 30
    c = Counters(store)
    counts = {"events.delivered": 5, "requests.total": 2, "requests.succeeded": 2, **hist_counts([0.003, 0.003])}
    for minutes_ago in (50, 20, 0):
        c.bump(counts, now - minutes_ago * BUCKET_SECONDS)
    origin = origin_for(now, 3600)
    samples = refill(read_buckets(store, origin), origin, now)
    live = read_counts(store, origin)
    assert samples[-1].counts["events.delivered"] == 10 and live["events.delivered"] == 15
    h = History()
    h.extend(samples)
    h.add(Sample(t=now, counts=live, spool_size=0))
    assert h.latest().delivered_per_s == round(5 / 30, 3) and h.latest().p50_ms == 5


def test_observe_reads_the_read_model_and_metrics_of_the_last_hour(store) -> None:
    cfg = config(store)
    import time

    now = time.time()
    spool_for(cfg, store)  # the spool's database exists
    breaker_for(cfg, store).force_open()
    Counters(store).bump({"requests.total": 3, "requests.failed.connection": 3}, now)
    obs = observe(cfg, store, now, origin_for(now, 3600))
    assert obs.snapshot.circuit == "forced_open" and obs.sample.circuit == "forced_open"
    assert obs.metrics == error_metrics(cfg, store, now, 3600)  # the very document of `metrics --json --since 3600`
    assert obs.sample.counts["requests.failed.connection"] == 3


@pytest.mark.parametrize("panel", sorted(COMMANDS))
def test_every_command_the_page_shows_is_a_real_command(panel: str) -> None:
    parser = build_parser()
    for entry in COMMANDS[panel]:
        argv = shlex.split(entry["command"])
        assert argv[0] == "pattern-tracker"
        args = parser.parse_args(argv[1:])
        assert callable(args.func), entry


async def test_resolved_incidents_are_kept_newest_first_and_bounded(store) -> None:
    cfg = config(store, PATTERN_TRACKER__MONITORING__ALERTING__CHANNELS="log")
    breaker = breaker_for(cfg, store)
    alerter = Alerter(cfg, store)
    for _ in range(RESOLVED_KEPT + 2):
        breaker.force_open()
        await alerter.tick()
        breaker.reset()
        await alerter.tick()
    resolved = load_resolved(store)
    assert len(resolved) == RESOLVED_KEPT and {r.alert for r in resolved} == {"circuit_open"}
    assert all(a.resolved_at >= b.resolved_at for a, b in zip(resolved, resolved[1:]))
    assert all(r.resolved_at >= r.started_at for r in resolved)


# ---------------------------------------------------------------------------------------
# The HTTP face on a real status server


async def test_the_status_server_serves_the_page_its_document_and_its_assets(store) -> None:
    cfg = config(store)
    server = StatusServer(cfg, store, port=0)
    base = await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/", allow_redirects=False) as resp:
                assert resp.status == 302 and resp.headers["Location"] == "/ui/"
            async with session.get(f"{base}/ui/") as resp:
                page = await resp.text()
                assert resp.status == 200 and resp.headers["Content-Security-Policy"] == CSP
                assert "<script>" not in page and " style=" not in page  # nothing inline: the CSP forbids it
            for asset in ("dashboard/dashboard.js", "dashboard/dashboard.css", "vendor/uplot/uPlot.iife.min.js",
                          "vendor/uplot/uPlot.min.css"):
                async with session.get(f"{base}/ui/static/{asset}") as resp:
                    assert resp.status == 200, asset
            async with session.get(f"{base}/ui/api/dashboard") as resp:
                doc = await resp.json()
                assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
            assert doc["circuit"]["state"] == "closed" and doc["spool"]["size"] == 0
            assert doc["health"]["service"] is None or doc["health"]["service"]["available"] is True
            assert len(doc["history"]["t"]) >= 1 and doc["sampler"]["id"] == server.sampler.id
            latest = doc["history"]["t"][-1]
            async with session.get(f"{base}/ui/api/dashboard", params={"since": str(latest)}) as resp:
                assert (await resp.json())["history"]["t"] == []  # only what the page has not seen yet
            for bad in ("abc", "nan", "inf"):
                async with session.get(f"{base}/ui/api/dashboard", params={"since": bad}) as resp:
                    assert resp.status == 400 and "since" in (await resp.json())["error"]
            async with session.post(f"{base}/ui/api/dashboard") as resp:
                assert resp.status == 405  # read-only
    finally:
        await server.stop()


async def test_the_sampler_follows_the_store_between_two_looks(store) -> None:
    cfg = config(store)
    sampler = Sampler(cfg, store, period=3600)  # the loop sleeps: the test drives the looks itself
    await sampler.start()
    try:
        before = sampler.document()
        assert before["circuit"]["state"] == "closed"
        breaker_for(cfg, store).force_open()
        await sampler.tick()
        after = sampler.document(since=before["history"]["t"][-1])
        assert after["circuit"]["state"] == "forced_open" and after["health"]["status"] == "unhealthy"
        assert after["history"]["circuit"] == ["forced_open"]
    finally:
        await sampler.stop()
