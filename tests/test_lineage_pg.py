"""The PostgreSQL lineage store against a real server (tests.pgserver): schema, semantics (the same
answers as the LMDB store), concurrency between replicas, faults and recovery, import, file listing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_contract import LineageUnavailable, LineageValidationError, PatternNotFound
from pattern_tracker.sinks.lineage_layout import LineageDbs, node_decoder, values
from pattern_tracker.sinks.lineage_pg import PostgresLineage
from pattern_tracker.sinks.lineage_pg_schema import SCHEMA_VERSION
from pattern_tracker.settings.store_url import mask_store_url
from tests.clitools import cli_env
from tests.pgserver import PgServer, free_port

ROOT = Path(__file__).resolve().parent.parent


def ev(event_type: str, pid: str, *parents: str, version: str = "1", file_path: str | None = "/s/a.py",
       **kw: Any) -> TrackRequest:
    data = kw.pop("pattern_data", {"code": f"# {pid}@{version}\n"})
    return msgspec.convert({"event_type": event_type, "pattern_id": pid, "pattern_version": version,
                            "file_path": file_path, "parent_pattern_ids": list(parents), "pattern_data": data,
                            **kw}, TrackRequest)


def created(pid: str, **kw: Any) -> TrackRequest:
    return ev("pattern_created", pid, **kw)


def modified(pid: str, *parents: str, **kw: Any) -> TrackRequest:
    return ev("pattern_modified", pid, *parents, **kw)


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresLineage]:
    store = PostgresLineage(pg_url, max_size=4, connect_timeout=3, statement_timeout=5)
    await store.start()
    yield store
    await store.close()


async def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(sql)
        return await cur.fetchall()


# -- schema ---------------------------------------------------------------------------------------


async def test_concurrent_starts_migrate_once_and_a_restart_finds_the_schema_current(pg_url: str) -> None:
    a, b = PostgresLineage(pg_url), PostgresLineage(pg_url)
    await asyncio.gather(a.start(), b.start())
    try:
        assert await rows(pg_url, "SELECT version FROM lineage_schema_version") == [(SCHEMA_VERSION,)]
        assert (await a.track(created("p")))["pattern_id"] == "p"
        assert (await b.track(created("p")))["status"] == "already_exists"
    finally:
        await asyncio.gather(a.close(), b.close())
    again = PostgresLineage(pg_url)
    await again.start()
    try:
        assert await again.count() == 1
        assert len(await rows(pg_url, "SELECT * FROM lineage_schema_version")) == 1
        tables = {r[0] for r in await rows(pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert tables == {"lineage_nodes", "lineage_edges", "lineage_files", "lineage_schema_version"}
    finally:
        await again.close()


# -- the LMDB store's semantics -------------------------------------------------------------------


def _scenario() -> list[list[TrackRequest]]:
    """Batches over the edge cases of the rules: duplicates (also within a batch), parents in the same
    batch, a new version of a pattern id, merges with a shared ancestor and a repeated parent,
    forks, missing parents, usage events, a notebook's cells, a chain deeper than the ancestry limit."""
    meta = {"code": "x", "occurred_at": 1700000000.25, "session_id": "s-1"}
    first = [
        created("a", pattern_data=meta), modified("a2", "a"), created("a"), modified("a2", "a"),
        created("b", file_path="/s/b.py"), ev("pattern_merged", "m", "a2", "b", file_path="/s/m.py"),
        ev("pattern_merged", "mm", "m", "a", file_path="/s/m.py"), ev("pattern_merged", "bb", "b", "b"),
        ev("pattern_forked", "f", "a", file_path="/s/f.py"), ev("pattern_forked", "f0"), modified("x", "ghost"),
        modified("y", "a", "ghost"), modified("z", "ghost", "a"), ev("pattern_applied", "a"),
        ev("pattern_deprecated", "ghost"), modified("a", "a", version="2"), modified("k", "a"),
        created("c1", file_path="/n/nb.ipynb#cell1"), created("c2", file_path="/n/nb.ipynb#cell2"),
        created("nb", file_path="/n/nb.ipynb"), created("nx", file_path="/n/nb.ipynbx"),
        created("np", file_path=None, pattern_data={"code": "y", "file_path": "/s/from-data.py"}),
    ]
    chain = [created("d0", file_path="/s/deep.py")] + [modified(f"d{i}", f"d{i - 1}", file_path="/s/deep.py")
                                                         for i in range(1, 26)]
    later = [modified("k2", "a"), modified("mm2", "mm", edge_type="derived_from", transformation_type="optimization"),
             ev("pattern_validated", "v", file_path="/s/v.py"),
             created("w", file_path="/s/when.py", pattern_data={"code": "w", "occurred_at": 1700000000, "session_id": "s"})]
    return [first, chain, later]


_TIMES = ("created_at", "timestamp", "first_seen", "last_seen")


def _comparable(value: Any) -> Any:
    """An answer without what differs by design between two runs: the times of tracking (a file
    summary's last_edit is one when its node has no occurred_at: those scenario nodes have no
    session either) and the usage events' random event id."""
    if isinstance(value, LineageValidationError):
        return ("error", value.kind, value.detail, value.parent_missing)
    if isinstance(value, dict):
        usage = "pattern_node_id" in value and "lineage_id" not in value
        tracking_time = "last_edit" in value and value.get("last_session") is None
        return {k: _comparable(v) for k, v in value.items()
                if k not in _TIMES and not (k == "last_edit" and tracking_time) and not (k == "event_id" and usage)}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


async def _answers(call: Any, pattern_ids: list[str], files: list[str | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pid in pattern_ids:
        for name in ("ancestry", "descendants"):
            try:
                out[f"{name} {pid}"] = await call(name, pid)
            except PatternNotFound as exc:
                out[f"{name} {pid}"] = ("not found", exc.detail)
        out[f"get {pid}"] = await call("get", pid)
        out[f"get {pid}@1"] = await call("get", pid, "1")
    for path in files:
        out[f"query {path}"] = await call("query", path, 100)
    out["query 3"] = await call("query", None, 3)
    for search, after, limit in [(None, None, 50), (None, None, 2), (None, "/s/b.py", 3), ("S/", None, 4),
                                 ("ipynb", "/n/nb.ipynb", 10), ("nothing", None, 5)]:
        out[f"files {search} {after} {limit}"] = await call("list_files", search, after, limit)
    out["count"] = await call("count")
    return out


async def test_same_answers_and_node_ids_as_the_lmdb_store(lineage, pg: PostgresLineage) -> None:
    async def on_lmdb(name: str, *args: Any) -> Any:
        return getattr(lineage, name)(*args)

    async def on_pg(name: str, *args: Any) -> Any:
        return await getattr(pg, name)(*args)

    lmdb_results, pg_results = [], []
    for batch in _scenario():
        lmdb_results.append(lineage.track_many(batch))
        pg_results.append(await pg.track_many(batch))
    assert _comparable(pg_results) == _comparable(lmdb_results)
    ids = sorted({r.pattern_id for batch in _scenario() for r in batch}) + ["ghost"]
    files = ["/s/a.py", "/s/b.py", "/s/m.py", "/s/deep.py", "/n/nb.ipynb", "/n/nb.ipynb#cell1", "/s/from-data.py",
             "/nowhere", None]
    expected = await _answers(on_lmdb, ids, files)
    got = await _answers(on_pg, ids, files)
    assert _comparable(got) == _comparable(expected)
    # spot checks that the comparison compares something
    assert [a["ancestor_pattern_id"] for a in got["ancestry mm"]["ancestors"]] == ["mm", "m", "a", "a2", "b"]
    assert len(got["ancestry d25"]["ancestors"]) == 20 and got["ancestry d25"]["ancestry_depth"] == 19
    assert [n["pattern_id"] for n in got["query /n/nb.ipynb"]] == ["c1", "c2", "nb"]
    assert [f["file_path"] for f in got["files S/ None 4"]["files"]] == ["/s/a.py", "/s/b.py", "/s/deep.py", "/s/f.py"]
    (when,) = [f for f in got["files None None 50"]["files"] if f["file_path"] == "/s/when.py"]
    assert when["last_edit"] == "2023-11-14T22:13:20+00:00" and when["last_session"] == "s"
    assert got["get a"]["pattern_version"] == "2" and got["get k2"]["generation"] == 3
    assert got["count"] == lineage.count() > 40
    # stored times read back as written
    assert got["ancestry a"]["ancestors"][0]["created_at"] == got["get a"]["created_at"]


async def test_track_raises_the_rules_errors(pg: PostgresLineage) -> None:
    with pytest.raises(LineageValidationError) as static:
        await pg.track(ev("pattern_merged", "m", "a"))
    assert static.value.kind == "static" and "at least 2" in static.value.detail
    with pytest.raises(LineageValidationError) as missing:
        await pg.track(modified("c", "ghost"))
    assert missing.value.kind == "execution" and missing.value.parent_missing
    assert pg.validate_batch([created("ok"), ev("pattern_created", "bad", pattern_data={})]) == \
        "track_creation requires pattern_data"
    with pytest.raises(PatternNotFound):
        await pg.ancestry("ghost")


async def test_a_value_postgresql_cannot_store_fails_that_event_alone(pg: PostgresLineage) -> None:
    results = await pg.track_many([created("ok1"), created("nul", pattern_data={"code": "a\x00b"}), created("ok2"),
                                   created("a\x00b"), modified("c", "a\x00b"), ev("pattern_applied", "x\x00")])
    assert isinstance(results[1], LineageValidationError) and "NUL" in results[1].detail
    assert isinstance(results[3], LineageValidationError) and "NUL" in results[3].detail
    assert [r.detail for r in results[4:]] == ["Validation error: Parent pattern not found: a\x00b",
                                               "Validation error: Pattern not found: x\x00"]
    assert [await pg.count(), results[0]["pattern_id"], results[2]["pattern_id"]] == [2, "ok1", "ok2"]
    # reads of such text find nothing instead of failing
    assert await pg.get("a\x00b") is None and await pg.query("/s\x00") == []
    with pytest.raises(PatternNotFound):
        await pg.ancestry("a\x00b")
    assert await pg.list_files(search="\x00") == {"files": [], "next": None}
    assert [f["file_path"] for f in (await pg.list_files(after="/s/a.p\x00z"))["files"]] == ["/s/a.py"]


# -- concurrency ----------------------------------------------------------------------------------


async def test_one_event_eight_times_at_once_through_two_replicas_is_one_node(pg_url: str) -> None:
    a, b = PostgresLineage(pg_url, max_size=4), PostgresLineage(pg_url, max_size=4)
    await asyncio.gather(a.start(), b.start())
    try:
        await a.track(created("root"))
        event = modified("child", "root")
        answers = await asyncio.gather(*((a if i % 2 else b).track_many([event]) for i in range(8)))
        datas = [res[0] for res in answers]
        assert sum(1 for d in datas if d.get("status") != "already_exists") == 1
        assert len({d["pattern_node_id"] for d in datas}) == 1
        assert await rows(pg_url, "SELECT count(*) FROM lineage_nodes WHERE pattern_id = 'child'") == [(1,)]
        assert await rows(pg_url, "SELECT count(*) FROM lineage_edges") == [(1,)]
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_overlapping_batches_in_opposite_orders_neither_deadlock_nor_duplicate(pg_url: str) -> None:
    a, b = PostgresLineage(pg_url, max_size=4), PostgresLineage(pg_url, max_size=4)
    await asyncio.gather(a.start(), b.start())
    try:
        events = [created(f"p{i:02}", file_path=f"/c/{i % 7}.py") for i in range(60)]
        t0 = time.monotonic()
        answers = await asyncio.gather(*(store.track_many(batch) for store, batch in
                                         [(a, events), (b, events[::-1]), (a, events[20:40]), (b, events[::2])]))
        assert time.monotonic() - t0 < 5  # no deadlock_timeout waits piled up
        assert all(not isinstance(r, LineageValidationError) for res in answers for r in res)
        assert sum(1 for res in answers for r in res if r.get("status") != "already_exists") == 60
        assert await a.count() == 60 and len((await a.list_files())["files"]) == 7
    finally:
        await asyncio.gather(a.close(), b.close())


# -- faults ---------------------------------------------------------------------------------------


async def test_database_restart_is_unavailable_then_recovers_by_itself(pg_server: PgServer, pg_url: str) -> None:
    store = PostgresLineage(pg_url, max_size=2, connect_timeout=1, pool_timeout=1, statement_timeout=2)
    await store.start()
    try:
        await store.track(created("before"))
        pg_server.stop("immediate")
        t0 = time.monotonic()
        with pytest.raises(LineageUnavailable) as down:
            await store.track(created("during"))
        assert time.monotonic() - t0 < 5
        assert down.value.component == "postgresql" and down.value.retry_after >= 1
        assert pg_server.password not in str(down.value) and pg_server.password not in down.value.reason
        status = await store.status()
        assert status.startswith("database_unavailable: ") and pg_server.password not in status
        pg_server.start()

        deadline = time.monotonic() + 20
        while True:  # the same object, nothing restarted by us: the pool reconnects by itself
            try:
                await store.track(created("after"))
                break
            except LineageUnavailable:
                assert time.monotonic() < deadline, "the store did not recover"
        assert await store.status() == "operational"
        assert [n["pattern_id"] for n in await store.query("/s/a.py")] == ["before", "after"]
    finally:
        await store.close()
        pg_server.ensure_running()


async def test_a_batch_cut_off_before_its_commit_leaves_nothing(pg_server: PgServer, pg_url: str) -> None:
    store = PostgresLineage(pg_url, max_size=2, connect_timeout=1, pool_timeout=1, statement_timeout=2)
    await store.start()
    try:
        await store.track(created("kept"))
        batch = [created(f"n{i}") for i in range(50)] + [modified("n-child", "n0")]
        with pytest.raises(LineageUnavailable):
            await store.track_many(batch, before_commit=pg_server.kill)  # every row sent, the server gone
        pg_server.start()
        assert await rows(pg_url, "SELECT pattern_id FROM lineage_nodes") == [("kept",)]
        assert await rows(pg_url, "SELECT count(*) FROM lineage_edges") == [(0,)]
    finally:
        await store.close()
        pg_server.ensure_running()


async def test_a_server_that_stops_answering_is_unavailable_within_the_timeouts(pg_server: PgServer,
                                                                                pg_url: str) -> None:
    store = PostgresLineage(pg_url, max_size=2, connect_timeout=0.5, pool_timeout=0.5, statement_timeout=0.5)
    await store.start()
    try:
        await store.track(created("before"))
        pg_server.pause()
        t0 = time.monotonic()
        with pytest.raises(LineageUnavailable):
            await store.track(created("during"))
        with pytest.raises(LineageUnavailable):
            await store.ancestry("before")
        assert time.monotonic() - t0 < 2 * 3.0  # each within pool + statement + connect timeouts + 1 s
        pg_server.resume()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert (await store.get("before"))["pattern_id"] == "before"
                break
            except LineageUnavailable:
                assert time.monotonic() < deadline, "the store did not recover"
    finally:
        pg_server.resume()
        await store.close()


async def test_start_with_the_database_unreachable_is_one_unavailable_error(pg_server: PgServer) -> None:
    pg_server.ensure_running()
    url = f"postgresql://tracker:{pg_server.password}@127.0.0.1:{free_port()}/nowhere?sslmode=disable"
    store = PostgresLineage(url, connect_timeout=1)
    t0 = time.monotonic()
    with pytest.raises(LineageUnavailable) as exc:
        await store.start()
    assert 0.9 < time.monotonic() - t0 < 4
    assert pg_server.password not in str(exc.value) and "refused" in exc.value.reason.lower()
    assert pg_server.password not in repr(store)
    wrong = PostgresLineage(pg_server.url("postgres", password="not-the-password"), connect_timeout=1)
    with pytest.raises(LineageUnavailable) as auth:
        await wrong.start()
    assert "password authentication failed" in auth.value.reason and "not-the-password" not in str(auth.value)


def test_mask_store_url_masks_every_password_form() -> None:
    assert mask_store_url("postgresql://u:s3cr%40t@db:5432/lineage?sslmode=require") == \
        "postgresql://u:***@db:5432/lineage?sslmode=require"
    assert mask_store_url("postgres://u@h1:1,h2:2/db?password=s3cret&application_name=x") == \
        "postgres://u@h1:1,h2:2/db?password=***&application_name=x"
    assert mask_store_url("postgresql:///db?host=/run/pg") == "postgresql:///db?host=/run/pg"
    assert mask_store_url("host=db user=u password='a b' dbname=x") == "host=db user=u password=*** dbname=x"
    # one masking for every face (settings' and the PostgreSQL sink's were two): any scheme, and
    # what urlsplit cannot parse keeps no password either
    assert mask_store_url("mysql://tracker:hunter2secret@db/x") == "mysql://tracker:***@db/x"
    assert mask_store_url("postgresql://u:hunter2secret@[db/x?password=hunter2secret") == \
        "postgresql://u:***@[db/x?password=***"


def test_the_hook_never_imports_the_driver(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "pattern_tracker.main", "hook"], input=b"{}",
                         capture_output=True, env=cli_env(tmp_path / "d"), cwd=ROOT, timeout=60)
    assert b"pattern_tracker.hook" in out.stderr or b"pattern_tracker.main" in out.stderr
    assert b"psycopg" not in out.stderr
    code = "import sys, pattern_tracker.sinks.lineage_pg_url; assert 'psycopg' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- copying an embedded store in -----------------------------------------------------------------


async def test_import_nodes_keeps_ids_and_links_and_is_idempotent(lineage, pg: PostgresLineage) -> None:
    for batch in _scenario():
        lineage.track_many(batch)
    nodes = lineage.store.read(lambda txn: sorted((node_decoder.decode(v) for v in values(txn, LineageDbs.of(
        lineage.store).log)), key=lambda n: n.seq))
    half = len(nodes) // 2
    assert await pg.import_nodes(nodes[:half]) == half
    assert await pg.import_nodes(nodes) == len(nodes) - half  # resumed: only what is missing
    assert await pg.import_nodes(nodes) == 0
    assert await pg.count() == lineage.count()
    for pid in ("mm", "mm2", "d25", "bb", "k2", "a"):
        assert await pg.ancestry(pid) == lineage.ancestry(pid)
        assert await pg.descendants(pid) == lineage.descendants(pid)
        assert await pg.get(pid) == lineage.get(pid)
    # tracking continues on the copy as it would have on the original
    assert (await pg.track(modified("k3", "a")))["generation"] == lineage.track(modified("k3", "a"))["generation"]


# -- the file listing -----------------------------------------------------------------------------


async def test_list_files_pages_searches_and_summarises(pg: PostgresLineage) -> None:
    paths = ["/src/Zeta.py", "/src/alpha.py", "/src/Émile.py", "/docs/README.md", "/n/nb.ipynb#c1", "/src/beta.py"]
    await pg.track_many([created(f"p{i}", file_path=p, language="python") for i, p in enumerate(paths)])
    await pg.track_many([modified("p1b", "p1", file_path="/src/alpha.py", tool_name="Edit",
                                  pattern_data={"code": "2", "occurred_at": 1700000123.5, "session_id": "sess-9"})])
    seen: list[str] = []
    after = None
    while True:
        page = await pg.list_files(after=after, limit=2)
        assert len(page["files"]) <= 2
        seen += [f["file_path"] for f in page["files"]]
        if page["next"] is None:
            break
        assert page["next"] == page["files"][-1]["file_path"]
        after = page["next"]
    assert seen == sorted(paths, key=lambda p: [ord(c) for c in p])
    alpha = (await pg.list_files(search="ALPHA"))["files"]
    assert [f["file_path"] for f in alpha] == ["/src/alpha.py"]
    summary = alpha[0]
    assert summary["versions"] == 2 and summary["last_pattern_id"] == "p1b" and summary["last_generation"] == 2
    assert summary["last_edit"] == "2023-11-14T22:15:23.500000+00:00" and summary["last_session"] == "sess-9"
    assert summary["last_tool"] == "Edit"
    assert summary["first_seen"] <= summary["last_seen"] and summary["language"] == "python"
    assert set(summary) == {"file_path", "language", "versions", "first_seen", "last_seen", "last_edit", "last_session",
                            "last_tool", "last_pattern_id", "last_pattern_version", "last_generation"}
    zeta = (await pg.list_files(search="zeta"))["files"][0]
    assert zeta["last_edit"] == zeta["last_seen"] and zeta["last_session"] is None
    assert [f["file_path"] for f in (await pg.list_files(search="émile"))["files"]] == ["/src/Émile.py"]
    assert (await pg.list_files(search="src/", after="/src/Zeta.py", limit=1)) == {
        "files": [(await pg.list_files(search="alpha"))["files"][0]], "next": "/src/alpha.py"}
    assert await pg.list_files(search="nothing-like-it") == {"files": [], "next": None}
