"""LineageStore (real LMDB in tmp_path) and EmbeddedSink."""

from __future__ import annotations

import threading
import time
import uuid

import msgspec
import pytest

from pattern_tracker.model.events import TrackRequest, build_event, to_track_request
from pattern_tracker.sinks.embedded import EmbeddedSink
from pattern_tracker.sinks.lineage_store import LineageStore, LineageValidationError, PatternNotFound, random_uuids


def created(pid: str, version: str = "1", file_path: str | None = "/src/a.py", **kw) -> TrackRequest:
    return TrackRequest(event_type="pattern_created", pattern_id=pid, pattern_version=version,
                        file_path=file_path, pattern_data={"code": f"# {pid}\n"}, **kw)


def modified(pid: str, parent: str, version: str = "1", file_path: str | None = "/src/a.py", **kw) -> TrackRequest:
    return TrackRequest(event_type="pattern_modified", pattern_id=pid, pattern_version=version,
                        file_path=file_path, parent_pattern_ids=[parent], pattern_data={"code": f"# {pid}\n"}, **kw)


def test_chain_generations_ancestry_descendants(lineage: LineageStore) -> None:
    a = lineage.track(created("p1"))
    b = lineage.track(modified("p2", "p1"))
    c = lineage.track(modified("p3", "p2", transformation_type="bugfix"))
    assert set(a) == {"lineage_id", "pattern_node_id", "event_id", "pattern_id", "pattern_name", "created_at"}
    assert "generation" not in a and b["generation"] == 2 and c["generation"] == 3
    assert b["parent_node_ids"] == [a["pattern_node_id"]] and c["parent_node_ids"] == [b["pattern_node_id"]]
    assert a["lineage_id"] == b["lineage_id"] == c["lineage_id"]
    assert a["created_at"].endswith("+00:00")

    anc = lineage.ancestry("p3")
    # like the service: the node itself first (edge_type null), then its ancestors nearest first
    assert [r["ancestor_pattern_id"] for r in anc["ancestors"]] == ["p3", "p2", "p1"]
    assert [r["generation"] for r in anc["ancestors"]] == [3, 2, 1]
    assert [r["edge_type"] for r in anc["ancestors"]] == [None, "modified_from", "modified_from"]
    assert anc["total_ancestors"] == anc["ancestry_depth"] == 2
    assert anc["pattern_node_id"] == c["pattern_node_id"] and anc["lineage_id"] == a["lineage_id"]

    desc = lineage.descendants("p1")
    assert desc["total_descendants"] == 1
    assert desc["descendants"][0]["descendant_pattern_id"] == "p2"
    assert desc["descendants"][0]["transformation_type"] == "refactor"
    assert lineage.descendants("p2")["descendants"][0]["transformation_type"] == "bugfix"
    assert lineage.descendants("p3")["total_descendants"] == 0
    assert lineage.get("p2")["generation"] == 2 and lineage.get("p2", "9") is None
    assert lineage.stats() == {"nodes": 3, "patterns": 3, "edges": 2, "file_entries": 3}


def test_already_exists_is_idempotent(lineage: LineageStore) -> None:
    first = lineage.track(created("p1"))
    lineage.track(modified("p2", "p1"))
    assert lineage.count() == 2
    again = lineage.track(created("p1"))
    assert again["status"] == "already_exists"
    assert again["pattern_node_id"] == first["pattern_node_id"]
    assert lineage.track(modified("p2", "p1"))["status"] == "already_exists"
    assert lineage.count() == 2 and lineage.stats()["edges"] == 1


def test_parent_resolves_to_newest_version(lineage: LineageStore) -> None:
    lineage.track(created("p", version="1.0.0"))
    v2 = lineage.track(TrackRequest(event_type="pattern_created", pattern_id="p", pattern_version="2.0.0",
                                    pattern_data={"code": "2"}))
    child = lineage.track(modified("c", "p"))
    assert child["parent_node_ids"] == [v2["pattern_node_id"]]


@pytest.mark.parametrize(
    ("req", "detail"),
    [
        (TrackRequest(event_type="pattern_created", pattern_id="x"), "track_creation requires pattern_data"),
        (TrackRequest(event_type="pattern_created", pattern_id="", pattern_data={"a": 1}),
         "track_creation requires pattern_id"),
        (TrackRequest(event_type="pattern_modified", pattern_id="x"), "track_modification requires parent_pattern_ids"),
        (TrackRequest(event_type="pattern_merged", pattern_id="x", parent_pattern_ids=["a"]),
         "track_merge requires at least 2 parent_pattern_ids"),
        (TrackRequest(event_type="pattern_exploded", pattern_id="x"), "'pattern_exploded' is not a valid LineageEventType"),
        (TrackRequest(event_type="pattern_modified", pattern_id="x", parent_pattern_ids=["a"], edge_type="bogus"),
         "'bogus' is not a valid EdgeType"),
        (TrackRequest(event_type="pattern_modified", pattern_id="x", parent_pattern_ids=["a"],
                      transformation_type="rewrite"), "'rewrite' is not a valid TransformationType"),
    ],
)
def test_static_rules(lineage: LineageStore, req: TrackRequest, detail: str) -> None:
    with pytest.raises(LineageValidationError) as info:
        lineage.track(req)
    assert info.value.detail == detail and info.value.kind == "static"
    assert lineage.validate_batch([created("ok"), req]) == detail
    assert lineage.count() == 0


def test_execution_rules(lineage: LineageStore) -> None:
    with pytest.raises(LineageValidationError) as info:
        lineage.track(modified("c", "nope"))
    assert info.value.detail == "Validation error: Parent pattern not found: nope"
    assert info.value.kind == "execution" and info.value.parent_missing
    lineage.track(created("a"))
    with pytest.raises(LineageValidationError, match="Parent pattern not found: b"):
        lineage.track(TrackRequest(event_type="pattern_merged", pattern_id="m", parent_pattern_ids=["a", "b"]))
    with pytest.raises(LineageValidationError, match="^Validation error: Pattern not found: zz$"):
        lineage.track(TrackRequest(event_type="pattern_applied", pattern_id="zz"))
    assert lineage.validate_batch([modified("c", "nope")]) is None  # existence is checked per event
    assert lineage.count() == 1


def test_merge_defaults_and_generation(lineage: LineageStore) -> None:
    lineage.track(created("a"))
    lineage.track(modified("a2", "a"))
    lineage.track(created("b", file_path="/src/b.py"))
    m = lineage.track(TrackRequest(event_type="pattern_merged", pattern_id="m", parent_pattern_ids=["a2", "b"],
                                   pattern_data={"code": "m"}))
    assert m["generation"] == 3 and m["parent_count"] == 2
    node = lineage.get("m")
    assert node["edge_type"] == "merged_from" and node["transformation_type"] == "merge"
    assert [r["ancestor_pattern_id"] for r in lineage.ancestry("m")["ancestors"]] == ["m", "a2", "b", "a"]
    applied = lineage.track(TrackRequest(event_type="pattern_applied", pattern_id="m"))
    assert applied["pattern_node_id"] == m["pattern_node_id"] and lineage.count() == 4


def forked(pid: str, *parents: str, file_path: str | None = "/src/fork.py", **kw) -> TrackRequest:
    return TrackRequest(event_type="pattern_forked", pattern_id=pid, pattern_version="1", file_path=file_path,
                        parent_pattern_ids=list(parents), pattern_data={"code": f"# {pid}\n"}, **kw)


def test_fork_is_tracked_like_a_modification(lineage: LineageStore) -> None:
    root = lineage.track(created("r"))
    f = lineage.track(forked("f", "r"))
    assert f["generation"] == 2 and f["parent_node_ids"] == [root["pattern_node_id"]]
    assert f["lineage_id"] == root["lineage_id"]
    node = lineage.get("f")
    assert (node["edge_type"], node["transformation_type"]) == ("modified_from", "refactor")
    assert [r["ancestor_pattern_id"] for r in lineage.ancestry("f")["ancestors"]] == ["f", "r"]
    assert [d["descendant_pattern_id"] for d in lineage.descendants("r")["descendants"]] == ["f"]
    assert lineage.get("f2") is None
    assert lineage.track(forked("f2", "r", edge_type="derived_from"))["generation"] == 2
    assert lineage.get("f2")["edge_type"] == "derived_from"

    with pytest.raises(LineageValidationError) as info:
        lineage.track(forked("g", "ghost"))
    assert info.value.detail == "Validation error: Parent pattern not found: ghost"
    assert info.value.kind == "execution" and info.value.parent_missing
    with pytest.raises(LineageValidationError) as info:
        lineage.track(forked("h"))
    assert info.value.kind == "execution" and not info.value.parent_missing
    assert lineage.get("g") is None and lineage.get("h") is None
    assert lineage.stats()["edges"] == 2


def test_modification_resolves_only_its_first_parent(lineage: LineageStore) -> None:
    a = lineage.track(created("a"))
    lineage.track(created("b", file_path="/src/b.py"))
    lineage.track(modified("b2", "b", file_path="/src/b.py"))
    two = lineage.track(TrackRequest(event_type="pattern_modified", pattern_id="m", parent_pattern_ids=["a", "b2"],
                                     pattern_data={"code": "m"}))
    # generation from the first parent only (b2 is generation 2: a max over parents would give 3)
    assert two["generation"] == 2 and two["parent_node_ids"] == [a["pattern_node_id"]]
    assert lineage.get("m")["parent_pattern_ids"] == ["a"]
    assert [d["descendant_pattern_id"] for d in lineage.descendants("b2")["descendants"]] == []
    ghost = lineage.track(TrackRequest(event_type="pattern_modified", pattern_id="n", parent_pattern_ids=["a", "ghost"],
                                       pattern_data={"code": "n"}))
    assert ghost["generation"] == 2
    with pytest.raises(LineageValidationError, match="Parent pattern not found: ghost$"):
        lineage.track(TrackRequest(event_type="pattern_modified", pattern_id="o", parent_pattern_ids=["ghost", "a"]))


def test_track_many_partial_failure_and_order(lineage: LineageStore) -> None:
    reqs = [created("r"), modified("r2", "r"), modified("orphan", "missing"), modified("r3", "r2"),
            TrackRequest(event_type="pattern_created", pattern_id="bad")]
    out = lineage.track_many(reqs, "parallel")
    assert [type(r).__name__ for r in out] == ["dict", "dict", "LineageValidationError", "dict", "LineageValidationError"]
    assert out[3]["generation"] == 3
    assert out[2].parent_missing and not out[4].parent_missing
    assert lineage.count() == 3
    again = lineage.track_many(reqs[:2])
    assert [r["status"] for r in again] == ["already_exists", "already_exists"]


def test_nodes_written_earlier_in_the_transaction_are_seen(lineage: LineageStore) -> None:
    """A parent, a newer version of it and a duplicate all in one transaction resolve as if tracked one by one."""
    out = lineage.track_many([created("p", version="1"), created("p", version="2"), modified("c", "p"),
                              created("p", version="2"), modified("d", "c")])
    assert out[2]["parent_node_ids"] == [out[1]["pattern_node_id"]] and out[2]["generation"] == 2
    assert out[3]["status"] == "already_exists" and out[3]["pattern_node_id"] == out[1]["pattern_node_id"]
    assert out[4]["generation"] == 3 and out[4]["lineage_id"] == out[1]["lineage_id"]
    assert [r["ancestor_pattern_id"] for r in lineage.ancestry("d")["ancestors"]] == ["d", "c", "p"]
    assert lineage.count() == 4


def test_before_commit_runs_once_after_the_writes(lineage: LineageStore) -> None:
    seen: list[int] = []

    def count_from_another_thread() -> None:
        reader = threading.Thread(target=lambda: seen.append(lineage.count()))
        reader.start()
        reader.join()

    out = lineage.track_many([created("a"), modified("b", "a")], before_commit=count_from_another_thread)
    assert seen == [0]  # called once, before the commit made the nodes visible
    assert all(isinstance(r, dict) for r in out) and lineage.count() == 2


def test_random_uuids() -> None:
    ids = random_uuids(50)
    assert len(set(ids)) == 50
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 for i in ids)
    assert all(uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


def test_query_by_file(lineage: LineageStore) -> None:
    lineage.track_many([created("a1"), created("b1", file_path="/src/b.py"), modified("a2", "a1"), modified("a3", "a2")])
    nodes = lineage.query("/src/a.py")
    assert [n["pattern_id"] for n in nodes] == ["a1", "a2", "a3"]
    assert nodes[0]["pattern_data"] == {"code": "# a1\n"}
    assert [n["pattern_id"] for n in lineage.query("/src/a.py", limit=2)] == ["a1", "a2"]
    assert lineage.query("/src/none.py") == []
    assert [n["pattern_id"] for n in lineage.query()] == ["a1", "b1", "a2", "a3"]
    with pytest.raises(PatternNotFound):
        lineage.ancestry("nope")
    with pytest.raises(PatternNotFound):
        lineage.descendants("nope")


def test_query_of_a_notebook_brings_its_cells(lineage: LineageStore) -> None:
    """NotebookEdit tracks each cell as NB#CELL: asking for the notebook lists them all, oldest first,
    also when a cell's path is too long for a key (hashed) and never a look-alike file's nodes."""
    long_nb = "/" + "n" * 390 + ".ipynb"  # its cells' keys exceed 400 bytes: hashed, not prefix-scannable
    lineage.track_many([
        created("c1", file_path="/w/nb.ipynb#c1"), created("c2", file_path="/w/nb.ipynb#c2"),
        modified("c1b", "c1", file_path="/w/nb.ipynb#c1"), created("whole", file_path="/w/nb.ipynb"),
        created("other", file_path="/w/nb.ipynbx#c1"), created("py", file_path="/w/a.py#c1"),
        created("l1", file_path=long_nb + "#" + "c" * 40), created("l2", file_path=long_nb + "#" + "d" * 40),
    ])
    assert [n["pattern_id"] for n in lineage.query("/w/nb.ipynb")] == ["c1", "c2", "c1b", "whole"]
    assert [n["pattern_id"] for n in lineage.query("/w/nb.ipynb", limit=2)] == ["c1", "c2"]
    assert [n["pattern_id"] for n in lineage.query("/w/nb.ipynb#c1")] == ["c1", "c1b"]
    assert [n["pattern_id"] for n in lineage.query(long_nb)] == ["l1", "l2"]
    assert lineage.query("/w/a.py") == []  # only notebooks have cells


def test_odd_keys(lineage: LineageStore) -> None:
    long_id = "x" * 1000
    nul_id = "a\0b"
    lineage.track(created(long_id, file_path="/" + "d" * 900))
    lineage.track(modified(nul_id, long_id, version="v\0" * 200, file_path="/" + "d" * 900))
    assert lineage.ancestry(nul_id)["total_ancestors"] == 1
    assert len(lineage.query("/" + "d" * 900)) == 2


def test_scheme_from_events(lineage: LineageStore) -> None:
    """The pipeline's identity scheme passes the service's rules: a real chain, idempotent resends."""
    e1 = build_event(file_path="/w/app.py", code="a = 1\n", version=1, parent_pattern_id=None, source="hook",
                     occurred_at=1.0)
    e2 = build_event(file_path="/w/app.py", code="a = 2\n", version=2, parent_pattern_id=e1.pattern_id,
                     source="hook", occurred_at=2.0)
    out = lineage.track_many([to_track_request(e1), to_track_request(e2)])
    assert out[0]["event_id"] == e1.event_id and out[1]["generation"] == 2
    assert lineage.ancestry(e2.pattern_id)["total_ancestors"] == 1


def test_track_many_throughput(lineage: LineageStore) -> None:
    code = "def f(x):\n    return x + 1\n" * 36  # ~1 KB
    reqs: list[TrackRequest] = []
    for f in range(2000):
        path = f"/src/mod{f}.py"
        for v in range(1, 6):
            reqs.append(TrackRequest(
                event_type="pattern_created" if v == 1 else "pattern_modified", pattern_id=f"f{f}-v{v}",
                pattern_version=str(v), file_path=path, pattern_data={"code": code, "file_path": path},
                parent_pattern_ids=[] if v == 1 else [f"f{f}-v{v - 1}"]))
    t0 = time.perf_counter()
    out = lineage.track_many(reqs, "sequential")
    dt = time.perf_counter() - t0
    t1 = time.perf_counter()
    lineage.track_many(reqs, "sequential")
    dt_dup = time.perf_counter() - t1
    print(f"\ntrack_many: {len(reqs)} events (~1 KB each) in {dt * 1000:.0f} ms = {len(reqs) / dt:,.0f} events/s; "
          f"re-send (already_exists) {len(reqs) / dt_dup:,.0f} events/s")
    assert all(isinstance(r, dict) for r in out) and lineage.count() == 10_000
    assert lineage.ancestry("f7-v5")["total_ancestors"] == 4
    assert len(reqs) / dt > 2_000  # loose floor: only catches a pathological regression


# -- EmbeddedSink --------------------------------------------------------------------------------


def _events():
    e1 = build_event(file_path="/w/m.py", code="x = 1\n", version=1, parent_pattern_id=None, source="hook",
                     occurred_at=1.0)
    e2 = build_event(file_path="/w/m.py", code="x = 2\n", version=2, parent_pattern_id=e1.pattern_id,
                     source="hook", occurred_at=2.0)
    orphan = build_event(file_path="/w/o.py", code="y\n", version=3, parent_pattern_id="gone-v2-00000000",
                         source="watch", occurred_at=3.0)
    return e1, e2, orphan


async def test_embedded_sink_outcomes(lineage: LineageStore) -> None:
    sink = EmbeddedSink(lineage)
    await sink.start()
    try:
        e1, e2, orphan = _events()
        out = await sink.deliver([e1, e2, orphan])
        assert [o.status for o in out] == ["delivered", "delivered", "retryable"]
        assert out[2].error_class == "parent_missing" and "Parent pattern not found" in out[2].reason
        again = await sink.deliver([e2, e1])
        assert [o.status for o in again] == ["already_exists", "already_exists"] and all(o.acknowledged for o in again)
        invalid = msgspec.structs.replace(e1, event_type="pattern_modified", pattern_version="77", parent_pattern_ids=[])
        perm = await sink.deliver([invalid])
        assert perm[0].status == "permanent" and perm[0].error_class == "validation"
        assert perm[0].reason == "track_modification requires parent_pattern_ids"
        assert await sink.deliver([]) == []
        health = await sink.health()
        assert health.available and health.status == "healthy"
        assert sink.name == "embedded" and lineage.count() == 2
    finally:
        await sink.close()


async def test_embedded_sink_store_failure_is_retryable(lineage: LineageStore) -> None:
    class Broken(LineageStore):
        def track_many(self, reqs, processing_mode="sequential"):
            raise OSError("disk gone")

    sink = EmbeddedSink(Broken(lineage.store))
    e1, e2, _ = _events()
    out = await sink.deliver([e1, e2])
    assert [o.status for o in out] == ["retryable", "retryable"] and out[0].error_class == "store"
    await sink.close()


def test_parent_head_remembered_is_dropped_once_another_writer_adds_a_version(lineage: LineageStore) -> None:
    """The heads remembered by one LineageStore (a process) are checked against the store: a newer
    version written by another writer on the same environment is the parent, not the one remembered."""
    other = LineageStore(lineage.store)  # another writer: its own memory, the same LMDB environment
    lineage.track(created("p", "1"))
    lineage.track(modified("c1", "p"))  # resolves p -> version 1 (and remembers it)
    other.track(modified("p", "p", version="2"))  # p version 2, a child of version 1, by the other writer
    child = lineage.track(modified("c2", "p"))
    assert child["generation"] == 3
    assert child["parent_node_ids"] == [lineage.get("p", "2")["pattern_node_id"]]


def test_parent_heads_come_from_committed_transactions_only(lineage: LineageStore) -> None:
    """A transaction that failed teaches nothing: its node is no parent later."""
    class Boom(Exception):
        pass

    def fail() -> None:
        raise Boom

    with pytest.raises(Boom):
        lineage.track_many([created("gone")], before_commit=fail)
    [result] = lineage.track_many([modified("orphan", "gone")])
    assert isinstance(result, LineageValidationError) and result.parent_missing
