"""An event the overflow policy dropped while it was in flight stays dropped.

A live event's spool entry is written once, with its version, before it enters the graph. If the
spool drops it meanwhile (``drop_oldest``: this run reading on, or a hook in another process) and
its delivery then fails, the spill must not queue it again: that took another entry's place
(perhaps one also in flight, whose spill did the same), so drops were counted more than once per
event (`run` of 40 events into a spool of 5 said ``dropped 75``) and the spool no longer held the
newest events. Real LMDB, the real console script, real services on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pattern_tracker.core.store import Store
from pattern_tracker.model.events import PatternEvent, build_event
from pattern_tracker.sinks.lineage_store import LineageStore
from pattern_tracker.state.spool import Spool, SpoolFull, SpoolLimits
from tests.clitools import cli_env, free_port, run_cli, serve
from tests.spool_scenarios import FAST, RefusingService, balanced, hook_edits

BOUND, READ = 5, 40
ONE_TRY = {"PATTERN_TRACKER__RESILIENCE__RETRY__MAX_ATTEMPTS": "1", "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "100"}


def events(prefix: str, n: int) -> list[PatternEvent]:
    return [build_event(file_path=f"{prefix}{i}.py", code=f"x = {i}\n", version=1, parent_pattern_id=None,
                        source="stdin", occurred_at=0) for i in range(n)]


def spooled(spool: Spool) -> list[str]:
    return [entry.event.event_id for _, entry in spool.read_batch(0, 1000)]


def env_for(data: Path, **extra: str) -> dict[str, str]:
    """Fast retries, cache_size 5, the hook spawning no drainer (its edits stay for us to see)."""
    return cli_env(data, **{**FAST, "PATTERN_TRACKING_CACHE_SIZE": str(BOUND), **extra})


def ids(evs: list[PatternEvent]) -> list[str]:
    return [ev.event_id for ev in evs]


# -- the spool's rule, over real LMDB -----------------------------------------------------------


def test_a_spill_does_not_queue_again_the_events_dropped_while_they_were_in_flight(store: Store) -> None:
    spool = Spool(store, SpoolLimits(3, "drop_oldest"), warn=lambda _: None)
    now = time.time()
    first = events("/first/", 3)
    spool.enqueue(first, now)  # read: spooled, then into the graph
    newer = events("/newer/", 2)
    Spool(store, SpoolLimits(3, "drop_oldest"), warn=lambda _: None).enqueue(newer, now)  # another writer meanwhile
    assert spooled(spool) == ids(first[2:] + newer) and spool.overflow_drops(now) == 2

    # Every delivery failed: the two dropped stay dropped; the one still queued is kept.
    assert store.write(lambda txn: spool.mark_spilled(txn, first + newer, "retries_exhausted", now)) == 3
    # Spilled again: the 3 are still kept (what the spill's log line says), their first spill counted once.
    assert store.write(lambda txn: spool.mark_spilled(txn, first + newer, "retries_exhausted", now)) == 3
    stats = spool.stats(now)
    assert spooled(spool) == ids(first[2:] + newer)  # the newest 3, oldest first
    assert (stats.entered, stats.dropped, stats.spilled) == (5, 2, 3), stats


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "block"])
def test_an_event_that_expired_in_flight_is_not_queued_again_whatever_the_policy(store: Store, policy: str) -> None:
    spool = Spool(store, SpoolLimits(2, policy, ttl=60.0), warn=lambda _: None)
    now = time.time()
    old = events("/old/", 2)
    spool.enqueue(old, now)
    assert spool.expire(now + 61) == ids(old)  # while their delivery is under way
    later = events("/later/", 2)
    spool.enqueue(later, now + 61)  # the spool full again (block: no room to make)
    # The spill neither queues them again, nor drops an entry for them, nor waits (block).
    assert store.write(lambda txn: spool.mark_spilled(txn, old + later, "circuit_open", now + 62)) == 2
    stats = spool.stats(now)
    assert spooled(spool) == ids(later) and (stats.entered, stats.expired, stats.dropped) == (4, 2, 0), stats


def test_an_archive_event_takes_free_room_only(store: Store) -> None:
    spool = Spool(store, SpoolLimits(2, "drop_oldest"), warn=lambda _: None)
    now = time.time()
    live, archived = events("/live/", 1), events("/arch/", 2)
    spool.enqueue(live, now)
    durable = frozenset(ids(archived))
    assert store.write(lambda txn: spool.mark_spilled(txn, archived[:1], "circuit_open", now, durable=durable)) == 1
    with pytest.raises(SpoolFull):  # full: it never takes the live edit's place
        store.write(lambda txn: spool.mark_spilled(txn, archived[1:], "circuit_open", now, durable=durable))
    assert spooled(spool) == ids(live + archived[:1]) and spool.stats(now).dropped == 0


# -- the user's path: the console script ----------------------------------------------------------


def stdin_records(n: int) -> bytes:
    return b"".join(json.dumps({"file_path": f"/w/f{i:02}.py", "code": f"x = {i}\n"}).encode() + b"\n"
                    for i in range(n))


def spool_events(data: Path) -> list[tuple[str, str]]:
    """(file path, code) of each spooled event, oldest first (read after the run has exited)."""
    store = Store.open(data)
    try:
        return [(e.event.file_path or "", e.event.code) for _, e in Spool(store).read_batch(0, 1000)]
    finally:
        store.close()


def delivered(service_data: Path) -> list[str]:
    store = Store.open(service_data)
    try:
        return sorted(node["file_path"] for node in LineageStore(store).query(None, limit=1000))
    finally:
        store.close()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_run_with_the_service_down_drops_each_surplus_event_once_and_keeps_what_the_policy_says(
        tmp_path: Path, policy: str) -> None:
    """`run --source stdin --json`, 40 events, cache_size 5, the service down: exit 0, read 40, left 5,
    dropped 35 (before: drop_oldest said 75, every in-flight event queued again by its spill). The
    spool holds the newest 5 (drop_oldest) or the first 5 (drop_newest: newcomers refused), in order.
    The service back: `drain` delivers those 5, once; none of the dropped ones comes back."""
    data = tmp_path / "data"
    env = env_for(data, PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{free_port()}",
                  PATTERN_TRACKER__PATTERN_TRACKING__OVERFLOW_POLICY=policy)
    res = run_cli("run", "--source", "stdin", "--json", env=env, input=stdin_records(READ))
    assert res.returncode == 0, (res.stdout, res.stderr)  # docs/cli.md: undelivered events stay in the spool
    summary = json.loads(res.stdout)
    assert (summary["read"], summary["left_in_spool"], summary["delivered"]) == (READ, BOUND, 0), summary
    assert summary["dropped"] == summary["read"] - summary["left_in_spool"] == READ - BOUND, summary
    assert summary["delivered_anyway"] == 0, summary  # nothing was delivered: 35 really gone
    kept = range(READ - BOUND, READ) if policy == "drop_oldest" else range(BOUND)
    assert spool_events(data) == [(f"/w/f{i:02}.py", f"x = {i}\n") for i in kept]
    stats = json.loads(run_cli("cache", "stats", "--json", env=env).stdout)
    entered = READ if policy == "drop_oldest" else BOUND  # drop_newest: refused newcomers never entered
    assert (stats["entered"], stats["dropped"], stats["size"]) == (entered, READ - BOUND, BOUND), stats

    with serve(tmp_path / "service") as url:
        up = env_for(data, PATTERN_TRACKING_API_URL=url, CIRCUIT_BREAKER_RECOVERY_TIMEOUT="0.1",
                     PATTERN_TRACKER__PATTERN_TRACKING__OVERFLOW_POLICY=policy)
        res = run_cli("drain", "--json", env=up)
        assert res.returncode == 0, (res.stdout, res.stderr)
        summary = json.loads(res.stdout)
        assert (summary["delivered"], summary["already_existed"], summary["left_in_spool"], summary["dropped"]) \
            == (BOUND, 0, 0, 0), summary
    assert delivered(tmp_path / "service") == [f"/w/f{i:02}.py" for i in kept]
    assert spool_events(data) == []


def test_a_burst_larger_than_the_spool_delivered_at_once_says_it_was_delivered_anyway(tmp_path: Path) -> None:
    """`run --source stdin`, 40 events into a spool of 5, the service up: all 40 arrive, and the
    spool dropped 35 entries on the way (each event is spooled before the graph takes it). The
    summary said only "dropped 35", as if 35 were lost; it now says they were delivered anyway."""
    data = tmp_path / "data"
    with serve(tmp_path / "service") as url:
        env = env_for(data, PATTERN_TRACKING_API_URL=url)
        res = run_cli("run", "--source", "stdin", "--json", env=env, input=stdin_records(READ))
        assert res.returncode == 0, (res.stdout, res.stderr)
        line = run_cli("run", "--source", "stdin", env=env_for(tmp_path / "again", PATTERN_TRACKING_API_URL=url),
                       input=stdin_records(READ)).stderr.splitlines()[-1]
    summary = json.loads(res.stdout)
    assert (summary["delivered"], summary["left_in_spool"]) == (READ, 0), summary
    # Read in one go, all 40 are spooled before any is acknowledged: 35 drops (fewer, and as many
    # delivered anyway, were an acknowledgement to free room first).
    assert 0 < summary["dropped"] == summary["delivered_anyway"] <= READ - BOUND, summary
    assert delivered(tmp_path / "service") == [f"/w/f{i:02}.py" for i in range(READ)]
    dropped = re.search(r"dropped (\d+) .*delivered anyway: (\d+)", line)
    assert line.startswith("done: ") and "already there 40" in line and dropped, line
    assert dropped.group(1) == dropped.group(2), line


class HooksAtFirstRequest(RefusingService):
    """A service answering 503 to every delivery; at its first request, while the run's events are
    in flight, ``bound`` edits go through the real hook (other processes), each making the spool
    drop its oldest entry: the events of that very request."""

    def _fill(self) -> None:
        hook_edits(env_for(self.data), self.data.parent / "proj", self.bound)
        store = Store.open(self.data)
        try:
            self.filled = spooled(Spool(store))
        finally:
            store.close()


def test_events_a_hook_dropped_while_in_flight_do_not_take_the_hooks_edits_places(tmp_path: Path) -> None:
    """cache_size 5: `run` sends its 5 events; while they are in flight 5 hook edits drop them all;
    then the service refuses them. Their spill keeps them dropped: the spool holds the 5 hook edits
    and the run says dropped 5 (before: the spill queued the 5 again, dropping the hook edits: 10)."""
    data = tmp_path / "data"
    with HooksAtFirstRequest(data, BOUND) as service:
        env = env_for(data, PATTERN_TRACKING_API_URL=service.url, CIRCUIT_BREAKER_FAILURE_THRESHOLD="1",
                      CIRCUIT_BREAKER_RECOVERY_TIMEOUT="600")
        res = run_cli("run", "--source", "stdin", "--json", env=env, input=stdin_records(BOUND))
    assert res.returncode == 0, (res.stdout, res.stderr)
    summary = json.loads(res.stdout)
    assert (summary["read"], summary["delivered"], summary["left_in_spool"], summary["dropped"]) \
        == (BOUND, 0, BOUND, BOUND), summary
    assert len(service.filled) == BOUND
    assert [path for path, _ in spool_events(data)] == [str(tmp_path / "proj" / f"edit_{i}.py") for i in range(BOUND)]
    stats = json.loads(run_cli("cache", "stats", "--json", env=env).stdout)
    assert (stats["entered"], stats["dropped"]) == (2 * BOUND, BOUND), stats


class HooksAtFirstRequestThenDelivers(HooksAtFirstRequest):
    """The same hooks at the first request, which then reaches a real `serve` (``upstream``):
    the run's events, dropped from the spool while in flight, are delivered all the same."""

    def __init__(self, data: Path, bound: int, upstream: str) -> None:
        super().__init__(data, bound)
        self.upstream = upstream

    async def _track(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.filled:
            await asyncio.get_running_loop().run_in_executor(None, self._fill)
        async with aiohttp.ClientSession() as session, session.post(
                self.upstream + request.path_qs, data=body, headers={"Content-Type": "application/json"}) as answer:
            return web.Response(body=await answer.read(), status=answer.status, content_type="application/json")


def test_events_dropped_in_flight_then_delivered_are_not_counted_as_acked(tmp_path: Path) -> None:
    """cache_size 5: hooks drop the run's 5 events while they are in flight, then the service takes
    them. They arrive, but their entries were gone: `spool.acked` counts only the entries the
    acknowledgements removed, and `cache stats` balances exactly (before: acked counted every
    acknowledged id, entered 10 against acked 10 + dropped 5)."""
    data = tmp_path / "data"
    with serve(tmp_path / "service") as url, HooksAtFirstRequestThenDelivers(data, BOUND, url) as service:
        env = env_for(data, PATTERN_TRACKING_API_URL=service.url)
        res = run_cli("run", "--source", "stdin", "--json", env=env, input=stdin_records(BOUND))
        assert res.returncode == 0, (res.stdout, res.stderr)
        stats = json.loads(run_cli("cache", "stats", "--json", env=env).stdout)
        arrived = delivered(tmp_path / "service")
    summary = json.loads(res.stdout)
    assert len(service.filled) == BOUND and summary["dropped"] == BOUND == stats["dropped"], (summary, stats)
    assert {f"/w/f{i:02}.py" for i in range(BOUND)} <= set(arrived)  # the drop cannot recall a request sent
    # Acknowledged: the run's 5 and whichever hook edits it delivered; acked: only the latter.
    assert stats["acked"] == summary["delivered"] - BOUND, (summary, stats)
    assert stats["entered"] == 2 * BOUND and balanced(stats), stats
    assert summary["delivered_anyway"] == BOUND, summary  # the run's 5: their entries went in flight


def test_the_spill_log_line_says_what_the_spool_kept(tmp_path: Path) -> None:
    """The run's 5 events, dropped by hooks while in flight, then refused: their spill keeps none,
    and its INFO line says so (before: "5 event(s) kept in the spool for later")."""
    data = tmp_path / "data"
    with HooksAtFirstRequest(data, BOUND) as service:
        env = env_for(data, PATTERN_TRACKING_API_URL=service.url, **ONE_TRY)
        res = run_cli("run", "--source", "stdin", "--json", env=env, input=stdin_records(BOUND))
    assert res.returncode == 0, (res.stdout, res.stderr)
    said = [line.split(": ", 1)[1] for line in res.stderr.splitlines() if "kept in the spool for later" in line]
    assert said and said[0] == (f"0 event(s) kept in the spool for later (retries_exhausted); "
                                f"{BOUND} dropped or expired while in flight stay gone"), res.stderr
    stats = json.loads(run_cli("cache", "stats", "--json", env=env).stdout)
    assert stats["size"] == BOUND and balanced(stats), stats


class RefusingForGood(RefusingService):
    """Every delivery refused for good (422: dead-lettered, never retried); no hooks."""

    async def _track(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"success": False, "error": "Validation failed: code is required"}, status=422)


def test_dead_lettered_events_are_not_counted_as_acked(tmp_path: Path) -> None:
    """A dead letter leaves the spool as a dead letter, not as an acknowledgement: `spool.acked`
    stays 0 and the balance counts each event once (before: acked 3 and dead_letter 3 of 3)."""
    data = tmp_path / "data"
    with RefusingForGood(data, BOUND) as service:
        env = env_for(data, PATTERN_TRACKING_API_URL=service.url)
        res = run_cli("run", "--source", "stdin", "--json", env=env, input=stdin_records(3))
    assert json.loads(res.stdout)["dead_lettered"] == 3, (res.stdout, res.stderr)
    stats = json.loads(run_cli("cache", "stats", "--json", env=env).stdout)
    assert (stats["entered"], stats["acked"], stats["lettered"], stats["dead_letter"], stats["size"]) == (3, 0, 3, 3, 0), stats
    assert balanced(stats), stats


def test_the_balance_holds_when_letters_are_replayed_purged_or_were_dropped_in_flight(tmp_path: Path) -> None:
    """`cache stats` counts what left the spool as dead letters itself (`lettered`), instead of the
    balance reading the dead letter's size: that size also falls when letters are replayed into
    the spool (where they enter again) or purged, and counts letters whose entry the policy had
    dropped while they were in flight. Before, each of the three steps below broke the balance."""
    data = tmp_path / "data"
    with RefusingForGood(data, BOUND) as service:
        env = env_for(data, PATTERN_TRACKING_API_URL=service.url)
        assert run_cli("run", "--source", "stdin", env=env, input=stdin_records(3)).returncode == 0
        replayed = run_cli("dlq", "replay", "--all", "--no-drain", env=env)  # 3 letters enter the spool again
        assert replayed.returncode == 0, replayed.stderr
        stats = json.loads(run_cli("cache", "stats", "--json", env=env).stdout)
        assert (stats["entered"], stats["lettered"], stats["dead_letter"], stats["size"]) == (6, 3, 0, 3), stats
        assert balanced(stats), stats
        drained = run_cli("drain", "--json", env=env)  # refused for good again: 3 letters
        assert json.loads(drained.stdout)["dead_lettered"] == 3, (drained.stdout, drained.stderr)
        purged = run_cli("dlq", "purge", "--all", "--yes", env=env)
        assert purged.returncode == 0, purged.stderr
        stats = json.loads(run_cli("cache", "stats", "--json", env=env).stdout)
        assert (stats["entered"], stats["lettered"], stats["dead_letter"], stats["size"]) == (6, 6, 0, 0), stats
        assert balanced(stats), stats


class HooksAtFirstRequestThenRefusesForGood(HooksAtFirstRequest):
    """Hooks drop the run's in-flight events at the first request, which the service then refuses
    for good (422): the run's events become dead letters with no spool entry left to remove."""

    async def _track(self, request: web.Request) -> web.Response:
        await request.read()
        if not self.filled:
            await asyncio.get_running_loop().run_in_executor(None, self._fill)
        return web.json_response({"success": False, "error": "Validation failed: code is required"}, status=422)


def test_letters_whose_entries_were_dropped_in_flight_left_the_spool_once(tmp_path: Path) -> None:
    """cache_size 5: hook edits drop the run's 5 in-flight events, then the service refuses them
    for good. They left the spool when dropped (counted there), so the move to the dead letter
    removes no entry and counts none: `lettered` 0 while the dead letter holds 5, and the balance
    holds (before, reading the dead letter's size, it counted those 5 twice)."""
    data = tmp_path / "data"
    with HooksAtFirstRequestThenRefusesForGood(data, BOUND) as service:
        env = env_for(data, PATTERN_TRACKING_API_URL=service.url, CIRCUIT_BREAKER_FAILURE_THRESHOLD="100")
        res = run_cli("run", "--source", "stdin", "--json", env=env, input=stdin_records(BOUND))
        assert res.returncode == 0, (res.stdout, res.stderr)
        stats = json.loads(run_cli("cache", "stats", "--json", env=env).stdout)
    summary = json.loads(res.stdout)
    assert len(service.filled) == BOUND and summary["dropped"] == BOUND, summary
    assert stats["dead_letter"] >= BOUND and stats["lettered"] == stats["dead_letter"] - BOUND, stats
    assert balanced(stats), stats
