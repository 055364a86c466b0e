"""Two `serve` replicas (real subprocesses) over one real PostgreSQL database.

* three edits of one file delivered alternately through replica A and B make one chain
  (generations 1, 2, 3), readable through either;
* eight concurrent deliveries of one event through both make exactly one node;
* the database killed and restarted in the middle of a 5,000-event `replay` through both replicas
  (behind tests.loadbalancer): every event stored exactly once, none lost, none duplicated.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest

from pattern_tracker.model.api import PREFIX
from pattern_tracker.model.archive import Archive
from pattern_tracker.model.events import build_event, json_encoder, to_track_request
from pattern_tracker.sinks.http import HttpSink
from tests.clitools import BIN, cli_env, run_cli, serve, stop, wait_for
from tests.loadbalancer import balancer
from tests.pgserver import PgServer

# The replicas give up on a dead database fast: requests answer 503 within a second or two.
FAST_STORE = {"PATTERN_TRACKER__SERVE__CONNECT_TIMEOUT": "1", "PATTERN_TRACKER__SERVE__STATEMENT_TIMEOUT": "5",
              "PATTERN_TRACKER__SERVE__POOL_MAX_SIZE": "4"}


def chain(path: str, n: int) -> list:
    events, parent = [], None
    for v in range(1, n + 1):
        ev = build_event(file_path=path, code=f"print({v})\n", version=v, parent_pattern_id=parent, source="hook",
                         occurred_at=1_700_000_000.0 + v)
        events.append(ev)
        parent = ev.pattern_id
    return events


def sql(url: str, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def replicas(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(replica A's URL, replica B's URL, the database URL)."""
    pg_server.ensure_running()
    url = pg_server.url(pg_server.create_database())
    d = tmp_path_factory.mktemp("replicas")
    with serve(d / "a", "--store", url, env_extra=FAST_STORE) as a, \
            serve(d / "b", "--store", url, env_extra=FAST_STORE) as b:
        yield a, b, url


async def test_three_edits_through_alternate_replicas_make_one_chain(replicas: tuple[str, str, str]) -> None:
    a, b, url = replicas
    events = chain("/team/app.py", 3)
    for ev, base in zip(events, (a, b, a)):
        async with HttpSink(base) as sink:  # the tracker's own client, one delivery each
            [outcome] = await sink.deliver([ev])
        assert outcome.status == "delivered", outcome
    pids = [ev.pattern_id for ev in events]
    async with aiohttp.ClientSession() as http:
        for base in (a, b):
            async with http.get(f"{base}{PREFIX}/lineage/{pids[2]}", params={"query_type": "ancestry"}) as r:
                ancestry = (await r.json())["data"]
            assert [x["ancestor_pattern_id"] for x in ancestry["ancestors"]] == pids[::-1]
            assert [x["generation"] for x in ancestry["ancestors"]] == [3, 2, 1]
            async with http.get(f"{base}{PREFIX}/lineage/{pids[0]}", params={"query_type": "descendants"}) as r:
                descendants = (await r.json())["data"]
            assert [x["descendant_pattern_id"] for x in descendants["descendants"]] == [pids[1]]
            async with http.get(f"{base}{PREFIX}/lineage/query", params={"file_path": "/team/app.py"}) as r:
                patterns = (await r.json())["data"]["patterns"]
            assert [(p["pattern_id"], p["generation"]) for p in patterns] == list(zip(pids, [1, 2, 3]))
    assert sql(url, "SELECT count(*) FROM lineage_nodes WHERE file_path = %s", "/team/app.py") == [(3,)]


async def test_concurrent_deliveries_of_one_event_through_both_replicas_make_one_node(
        replicas: tuple[str, str, str]) -> None:
    a, b, url = replicas
    async with aiohttp.ClientSession() as http:
        for round_ in range(3):  # a few races, each of 8 requests let go at once
            [ev] = chain(f"/team/race{round_}.py", 1)
            body = json_encoder.encode(to_track_request(ev))
            single = json_encoder.encode({"events": [to_track_request(ev)], "processing_mode": "sequential"})

            async def post(i: int) -> dict:
                base = (a, b)[i % 2]
                path, data = ("/lineage/track", body) if i < 4 else ("/lineage/track/batch", single)
                async with http.post(f"{base}{PREFIX}{path}", data=data,
                                     headers={"Content-Type": "application/json"}) as r:
                    assert r.status == 200, await r.text()
                    answer = await r.json()
                return answer["data"] if i < 4 else answer["successful_results"][0]["data"]

            answers = await asyncio.gather(*(post(i) for i in range(8)))
            created = [x for x in answers if x.get("status") != "already_exists"]
            assert len(created) == 1, answers
            assert {x["pattern_node_id"] for x in answers} == {created[0]["pattern_node_id"]}
            assert sql(url, "SELECT count(*) FROM lineage_nodes WHERE pattern_id = %s", ev.pattern_id) == [(1,)]


async def test_a_child_reaching_one_replica_before_its_parent_reaches_the_other_waits_for_it(
        replicas: tuple[str, str, str]) -> None:
    """A tracker's batches spread over replicas lose their order: the child's may be handled by B
    while A is still storing the parent's. B gives the parent a moment instead of refusing."""
    a, b, url = replicas
    parent, child = chain("/team/inflight.py", 2)
    async with aiohttp.ClientSession() as http:
        async def post(base: str, ev: object) -> tuple[int, dict]:
            body = json_encoder.encode({"events": [to_track_request(ev)], "processing_mode": "sequential"})
            async with http.post(f"{base}{PREFIX}/lineage/track/batch", data=body,
                                 headers={"Content-Type": "application/json"}) as r:
                return r.status, await r.json()

        first = asyncio.create_task(post(b, child))  # sent first, to replica B
        await asyncio.sleep(0)  # let its request go out before the parent's
        (s_child, child_answer), (s_parent, parent_answer) = await asyncio.gather(first, post(a, parent))
    assert (s_child, s_parent) == (200, 200)
    assert child_answer["batch_summary"]["successful_events"] == 1, child_answer
    assert child_answer["successful_results"][0]["data"]["generation"] == 2
    assert sql(url, "SELECT count(*) FROM lineage_nodes WHERE file_path = %s", "/team/inflight.py") == [(2,)]


def _kill_mid_replay(pg: PgServer, tmp_path: Path) -> None:
    """The 5,000-event replay through two replicas; the database killed part way and started again."""
    archive_dir = tmp_path / "archive"
    run_cli("archive", "generate", "--events", "5000", "--files", "100", str(archive_dir),
            env=cli_env(tmp_path / "gen"), timeout=120).check_returncode()
    url = pg.url(pg.create_database())
    tracker = tmp_path / "tracker"
    config = tmp_path / "tracker.yaml"
    config.write_text(
        "pattern_tracking:\n  cache_size: 20000\n  overflow_policy: block\n"
        "resilience:\n  circuit_breaker:\n    failure_threshold: 3\n    recovery_timeout: 0.3\n"
        "  retry:\n    base_delay: 0.05\n    max_delay: 0.5\n")
    with serve(tmp_path / "a", "--store", url, env_extra=FAST_STORE) as a, \
            serve(tmp_path / "b", "--store", url, env_extra=FAST_STORE) as b, balancer([a, b]) as lb:
        env = cli_env(tracker, PATTERN_TRACKING_API_URL=lb.url)
        replay = subprocess.Popen([str(BIN), "--config", str(config), "replay", str(archive_dir), "--json"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: sql(url, "SELECT count(*) FROM lineage_nodes")[0][0] >= 1000, timeout=60,
                     what="a part of the replay stored")
            pg.kill()  # SIGKILL: the server and its backends vanish mid-transaction
            wait_for(lambda: _health(lb.url).startswith("database_unavailable"), timeout=20,
                     what="serve reporting the database down")
            pg.start()
            out, err = replay.communicate(timeout=180)
        finally:
            stop(replay)
        assert replay.returncode in (0, 4), (replay.returncode, out, err)
        summary = json.loads(out.decode().splitlines()[-1])
        assert summary["dead_lettered"] == 0 and summary["not_kept"] == 0, summary
        if replay.returncode == 4:  # the spool kept what the outage left undelivered: drain delivers it
            drained = run_cli("--config", str(config), "drain", "--until-empty", env=env, timeout=120)
            assert drained.returncode == 0, drained.stdout + drained.stderr
        assert all(lb.connections), lb.connections  # both replicas served the replay
    archive = Archive(str(archive_dir))
    try:
        keys = {(ev.pattern_id, ev.pattern_version) for chunk in archive.chunks(1000) for ev in chunk}
    finally:
        archive.close()
    assert len(keys) == 5000
    rows = sql(url, "SELECT pattern_id, pattern_version FROM lineage_nodes")
    assert len(rows) == 5000  # none duplicated (and the unique constraint would refuse one anyway)
    assert {tuple(r) for r in rows} == keys  # none lost


def _health(base: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
            return json.load(r)["components"]["lineage_tracker"]
    except OSError:
        return ""


def test_database_killed_mid_replay_through_two_replicas_loses_nothing(pg_server: PgServer, tmp_path: Path) -> None:
    pg_server.ensure_running()
    try:
        _kill_mid_replay(pg_server, tmp_path)
    finally:
        pg_server.ensure_running()  # the next tests' database server
