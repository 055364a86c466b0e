"""`pattern-tracker lineage copy --from DATA_DIR --to postgresql://…` (real subprocesses, a real
PostgreSQL): a 20k-node embedded store with chains, new versions of one pattern id, forks and
merges copied, then the same ancestry and descendants answers from both stores for a sample of
nodes; a second run copies 0; a run killed part way is resumed by the next."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from pattern_tracker.core.store import MIB, Store
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_store import LineageStore
from tests.clitools import BIN, cli_env, run_cli, wait_for
from tests.pgserver import PgServer, free_port

NODES = 20_000
SUMMARY = re.compile(r"lineage copy: copied (\d+), already there (\d+) \(of (\d+) nodes\) into (\S+)")


def _requests(n: int, seed: int = 13) -> list[TrackRequest]:
    """``n`` events making ``n`` nodes: roots, chains, new versions of one pattern id, forks and merges."""
    rng = random.Random(seed)
    made: list[str] = []  # pattern ids, oldest first
    versions: dict[str, int] = {}
    out: list[TrackRequest] = []
    for i in range(n):
        path = f"/team/src/m{i % 700}.py"
        data = {"code": f"def f{i}():\n    return {i}\n", "session_id": f"s{i % 37}"}
        near = made[-rng.randint(1, min(40, len(made)))] if made else ""
        r = rng.random()
        if len(made) < 50 or r < 0.10:
            req = TrackRequest(event_type="pattern_created", pattern_id=f"p{i}", file_path=path, pattern_data=data)
        elif r < 0.25:  # a new version of an existing pattern id: its parent resolves to the newest
            versions[near] = versions.get(near, 1) + 1
            out.append(TrackRequest(event_type="pattern_modified", pattern_id=near,
                                    pattern_version=str(versions[near]), parent_pattern_ids=[near],
                                    file_path=path, pattern_data=data, transformation_type="bugfix"))
            continue
        elif r < 0.35:
            req = TrackRequest(event_type="pattern_forked", pattern_id=f"p{i}", parent_pattern_ids=[near],
                               edge_type="derived_from", file_path=path, pattern_data=data)
        elif r < 0.45:
            other = made[rng.randrange(len(made))]
            parents = [near, other] if other != near else [near, made[0] if made[0] != near else made[1]]
            req = TrackRequest(event_type="pattern_merged", pattern_id=f"p{i}", parent_pattern_ids=parents,
                               edge_type="merged_from", file_path=path, pattern_data=data)
        else:
            req = TrackRequest(event_type="pattern_modified", pattern_id=f"p{i}", parent_pattern_ids=[near],
                               file_path=path, pattern_data=data, transformation_type="refactor")
        made.append(req.pattern_id)
        out.append(req)
    return out


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose embedded store holds NODES nodes."""
    data_dir = tmp_path_factory.mktemp("embedded")
    store = Store.open(data_dir, map_size=256 * MIB)
    try:
        lineage = LineageStore(store)
        reqs = _requests(NODES)
        for i in range(0, len(reqs), 5000):
            results = lineage.track_many(reqs[i:i + 5000], "sequential")
            assert not [r for r in results if isinstance(r, Exception)]
        assert lineage.count() == NODES
    finally:
        store.close()
    return data_dir


def _copy(data_dir: Path, url: str, *extra: str) -> tuple[int, int, int]:
    r = run_cli("lineage", "copy", "--from", str(data_dir), "--to", url, *extra, env=cli_env(data_dir.parent / "cli"),
                timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    m = SUMMARY.search(r.stdout)
    assert m, r.stdout
    assert "***" in m.group(4) and url.split(":")[2].split("@")[0] not in r.stdout + r.stderr  # no password
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def _count(url: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM lineage_nodes").fetchone()[0])
        except psycopg.errors.UndefinedTable:  # the copy has not created the schema yet
            return 0


async def _answers(data_dir: Path, url: str, pids: list[str]) -> tuple[list, list]:
    from pattern_tracker.sinks.lineage_pg import PostgresLineage

    store = Store.open(data_dir, map_size=256 * MIB)
    pg = PostgresLineage(url)
    await pg.start()
    try:
        lmdb_side, pg_side = [], []
        lineage = LineageStore(store)
        for pid in pids:
            lmdb_side.append((lineage.ancestry(pid), lineage.descendants(pid), lineage.get(pid)))
            pg_side.append((await pg.ancestry(pid), await pg.descendants(pid), await pg.get(pid)))
        return lmdb_side, pg_side
    finally:
        await pg.close()
        store.close()


def test_copy_gives_identical_answers_and_a_second_run_copies_nothing(embedded: Path, pg_url: str) -> None:
    copied, already, total = _copy(embedded, pg_url)
    assert (copied, already, total) == (NODES, 0, NODES)
    assert _count(pg_url) == NODES
    rng = random.Random(5)
    pids = sorted({r.pattern_id for r in _requests(NODES)})
    sample = rng.sample(pids, 300)
    lmdb_side, pg_side = asyncio.run(_answers(embedded, pg_url, sample))
    for pid, mine, theirs in zip(sample, lmdb_side, pg_side):
        assert mine == theirs, pid
    kinds = {g["event_type"] for _, _, g in lmdb_side}
    assert {"pattern_merged", "pattern_forked", "pattern_modified"} <= kinds, kinds  # the sample covers them
    assert _copy(embedded, pg_url) == (0, NODES, NODES)  # idempotent


def test_an_interrupted_copy_is_resumed_by_the_next_run(embedded: Path, pg_server: PgServer) -> None:
    url = pg_server.url(pg_server.create_database())
    proc = subprocess.Popen([str(BIN), "lineage", "copy", "--from", str(embedded), "--to", url, "--chunk", "200"],
                            env=cli_env(embedded.parent / "cli"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is not None or _count(url) >= 1000, timeout=120, interval=0.02,
                 what="a part copied")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    part = _count(url)
    assert 1000 <= part < NODES, part
    copied, already, total = _copy(embedded, url)
    assert (copied + already, total) == (NODES, NODES) and already == part
    assert _count(url) == NODES


def test_bad_target_or_source_is_one_line(embedded: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "cli", PATTERN_TRACKER__SERVE__CONNECT_TIMEOUT="1")
    down = f"postgresql://tracker:hunter2secret@127.0.0.1:{free_port()}/lineage"  # nothing listens there
    for args, code, words in (
        (["--from", str(embedded), "--to", down], 1, "cannot use postgresql://tracker:***@127.0.0.1:"),
        (["--from", str(embedded), "--to", "mysql://tracker:hunter2secret@db/x"], 2, "--to mysql://tracker:***@db/x"),
        (["--from", str(tmp_path), "--to", down], 2, "no pattern-tracker store there"),
        (["--from", str(embedded), "--to", down + "?nosuchoption=1"], 2, 'invalid URI query parameter: "nosuchoption"'),
    ):
        r = run_cli("lineage", "copy", *args, env=env, timeout=60)
        assert r.returncode == code and len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
        assert "hunter2secret" not in r.stdout + r.stderr
