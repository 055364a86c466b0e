"""The embedded store's layout 2 (sinks.lineage_layout) and the upgrade of a store written in layout 1.

A layout-1 store is made here the way the store wrote it before (its records written directly,
with the same rules), then opened: the upgraded store answers exactly as a store that tracked the
same events in layout 2 (same node ids, ancestry, descendants, nodes, file listing, counts), also
after the upgrade was killed part way and resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lmdb
import pytest

from pattern_tracker.core.identity import file_key, normalise_path
from pattern_tracker.core.store import MIB, Store, from_u64, u64
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_export import NodeExport
from pattern_tracker.sinks.lineage_layout import (
    FILE_MARK,
    IMPLIED,
    SEQ_KEY,
    LineageDbs,
    file_hash,
    head_decoder,
    key_of,
    node_decoder,
    node_encoder,
)
from pattern_tracker.sinks.lineage_rules import new_node, resolve_parents, static_check
from pattern_tracker.sinks.lineage_store import LineageStore
from pattern_tracker.sinks.lineage_upgrade import OldDbs, pending, upgrade
from tests.clitools import wait_for

NOW = "2026-01-01T00:00:00+00:00"
LONG = "/deep/" + "d" * 500 + "/x.py"  # too long for a key: kept under a digest


def ev(kind: str, pid: str, version: str = "1", parents: tuple[str, ...] = (), path: str | None = "/src/a.py",
       **kw: Any) -> TrackRequest:
    return TrackRequest(event_type=f"pattern_{kind}", pattern_id=pid, pattern_version=version, file_path=path,
                        parent_pattern_ids=list(parents), pattern_data={"code": f"# {pid} {version}\n" * 3}, **kw)


def scenario() -> list[list[TrackRequest]]:
    """Chains, new versions of one pattern, a fork, a merge, a duplicate, files with long paths and
    notebook cells, a node without a file, and a failing event (parent unknown)."""
    batches = [[ev("created", "a"), ev("modified", "b", parents=("a",)), ev("modified", "c", parents=("b",))],
               [ev("created", "a", "2"), ev("modified", "d", parents=("a",), path="/src/d.py"),
                ev("forked", "f", parents=("c",), path=LONG), ev("modified", "x", parents=("nope",))],
               [ev("merged", "m", parents=("d", "f", "c"), path="/nb/book.ipynb#cell-1"),
                ev("created", "n", path="/nb/book.ipynb"), ev("created", "solo", path=None),
                ev("created", "a", "2"), ev("modified", "g", parents=("m",), path="/nb/book.ipynb#cell-2")]]
    hook = file_hash("/src/h.py").decode()  # ids as the hook makes them: their file entries are IMPLIED
    batches.append([ev("created", f"{hook}-v1-aa", path="/src/h.py"),
                    ev("modified", f"{hook}-v2-bb", parents=(f"{hook}-v1-aa",), path="/src/h.py")])
    batches.append([ev("modified", f"{hook}-v3-cc", parents=(f"{hook}-v2-bb",), path="/src/other.py")])
    for i in range(40):  # a longer chain over a few files
        pid, parent = f"k{i}", f"k{i - 1}" if i else None
        batches.append([ev("modified", pid, parents=(parent,), path=f"/src/k{i % 3}.py") if parent
                        else ev("created", pid, path="/src/k0.py")])
    return batches


def write_layout_1(store: Store, batches: list[list[TrackRequest]]) -> None:
    """Track ``batches`` as the store did in layout 1 (its records, keys and rules)."""
    old, state = OldDbs.of(store), store.db("state")

    def run(txn: lmdb.Transaction, reqs: list[TrackRequest]) -> None:
        raw = txn.get(SEQ_KEY, db=state)
        seq = from_u64(raw) if raw else 0

        def newest(pid: str) -> Any:
            key = txn.get(key_of(pid, 300), db=old.latest)
            return (key, head_decoder.decode(txn.get(key, db=old.nodes))) if key is not None else None

        for req in reqs:
            op = static_check(req)
            pid_key = key_of(req.pattern_id, 300)
            key = pid_key + b"\0" + key_of(req.pattern_version, 150)
            if txn.get(key, db=old.nodes) is not None:
                continue
            try:
                parents = resolve_parents(req, op, newest)
            except Exception:  # noqa: BLE001 - a failed event wrote nothing
                continue
            seq += 1
            node = new_node(req, op, key, seq, NOW, parents)
            txn.put(key, node_encoder.encode(node), db=old.nodes)
            txn.put(pid_key, key, db=old.latest)
            for pkey in node.parent_keys:
                txn.put(pkey + b"\0" + u64(seq), key, db=old.children)
            if node.file_path:
                txn.put(key_of(node.file_path, 400) + b"\0" + u64(seq), key, db=old.files)
        txn.put(SEQ_KEY, u64(seq), db=state)

    for reqs in batches:
        store.write(lambda txn, reqs=reqs: run(txn, reqs))


def no_times(value: Any) -> Any:
    """``value`` without its timestamps (the two stores tracked at different times)."""
    if isinstance(value, dict):
        return {k: no_times(v) for k, v in value.items() if k not in ("created_at", "first_seen", "last_seen",
                                                                      "last_edit", "timestamp")}
    if isinstance(value, list):
        return [no_times(v) for v in value]
    return value


def answers(lineage: LineageStore) -> dict[str, Any]:
    hook = file_hash("/src/h.py").decode()
    pids = ["a", "b", "c", "d", "f", "m", "n", "solo", "g", "x"] + [f"k{i}" for i in range(40)] + [
        f"{hook}-v1-aa", f"{hook}-v2-bb", f"{hook}-v3-cc"]
    out: dict[str, Any] = {"count": lineage.count(), "stats": lineage.stats(),
                           "all": lineage.query(None, limit=1000),
                           "files": [lineage.list_files(limit=2), lineage.list_files(after="/nb/book.ipynb#cell-1"),
                                     lineage.list_files(search="BOOK"), lineage.list_files(search="d" * 20)],
                           "export": [n.node_id for chunk in NodeExport(lineage.store).chunks(7) for n in chunk]}
    for path in ("/src/a.py", "/src/d.py", LONG, "/nb/book.ipynb", "/src/k1.py", "/nowhere.py", "/src/h.py",
                 "/src/other.py"):
        out[f"query {path}"] = lineage.query(path, limit=100)
    for pid in pids:
        for name, fn in (("ancestry", lineage.ancestry), ("descendants", lineage.descendants)):
            try:
                out[f"{name} {pid}"] = fn(pid)
            except Exception as exc:  # noqa: BLE001 - the same error both ways
                out[f"{name} {pid}"] = repr(exc)
        out[f"get {pid}"] = lineage.get(pid)
        out[f"get {pid} 1"] = lineage.get(pid, "1")
    return no_times(out)


@pytest.fixture
def twin(tmp_path: Path) -> Any:
    """(a layout-1 store of the scenario, a layout-2 one that tracked the same events), open."""
    old = Store.open(tmp_path / "old", map_size=64 * MIB)
    new = Store.open(tmp_path / "new", map_size=64 * MIB)
    write_layout_1(old, scenario())
    reference = LineageStore(new)
    for batch in scenario():
        reference.track_many(batch)
    yield old, reference
    old.close()
    new.close()


def test_an_upgraded_store_answers_as_one_written_in_layout_2(twin: Any) -> None:
    old, reference = twin
    assert pending(old)
    upgraded = LineageStore(old)  # opening it upgrades it
    assert not pending(old)
    mine, theirs = answers(upgraded), answers(reference)
    assert mine == theirs
    assert mine["count"] == 53 and mine["stats"] == {"nodes": 53, "patterns": 52, "edges": 49, "file_entries": 52}
    assert [f["file_path"] for f in mine["files"][0]["files"]] == [LONG, "/nb/book.ipynb"]
    # the layout-1 dbs are empty, tracking goes on where it was
    assert all(old.entries(name) == 0 for name in ("lineage_nodes", "lineage_latest", "lineage_children",
                                                   "lineage_files"))
    assert upgraded.track(ev("modified", "k40", parents=("k39",)))["generation"] == 41
    assert LineageStore(old).count() == 54 and upgrade(old) == 0  # a second open: nothing to do


def test_an_upgrade_killed_part_way_resumes(tmp_path: Path) -> None:
    """A process upgrading the store (one record per transaction) is SIGKILLed once every node is
    moved, during the later steps; the next open finishes the upgrade, and the answers are as if
    nothing had happened."""
    more = [[ev("created", f"z{i}", path=f"/z/{i % 7}.py") for i in range(600)]]
    old = Store.open(tmp_path / "old", map_size=64 * MIB)
    write_layout_1(old, scenario() + more)
    path = old.path
    old.close()
    code = ("import sys; from pattern_tracker.core.store import Store;"
            "from pattern_tracker.sinks.lineage_upgrade import upgrade; upgrade(Store.open(sys.argv[1]), chunk=1)")
    proc = subprocess.Popen([sys.executable, "-c", code, path], stderr=subprocess.DEVNULL)
    try:
        def past_the_nodes() -> bool:
            env = lmdb.open(path, readonly=True, max_dbs=32)
            try:
                with env.begin() as txn:
                    def left(name: bytes) -> int:
                        return int(txn.stat(env.open_db(name, txn=txn, create=False))["entries"])
                    return left(b"lineage_nodes") == 0  # ~1,300 one-record steps still to go
            finally:
                env.close()

        wait_for(past_the_nodes, timeout=60, interval=0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    new = Store.open(tmp_path / "new", map_size=64 * MIB)
    store = Store.open(path, map_size=64 * MIB)
    try:
        reference = LineageStore(new)
        for batch in scenario() + more:
            reference.track_many(batch)
        assert pending(store)
        assert answers(LineageStore(store)) == answers(reference)
        assert not pending(store)
    finally:
        store.close()
        new.close()


def test_layout_2_invariants(twin: Any) -> None:
    """Every node is in the log under its seq, with its node key, its pattern's newest entry, one
    edge per parent and one entry per file; lineage_paths holds each file once; nothing else."""
    _, lineage = twin
    dbs = LineageDbs.of(lineage.store)

    def check(txn: lmdb.Transaction) -> None:
        nodes = [(bytes(k), node_decoder.decode(v)) for k, v in txn.cursor(db=dbs.log)]
        keys = {bytes(k): bytes(v) for k, v in txn.cursor(db=dbs.keys)}
        paths = {bytes(k): bytes(v) for k, v in txn.cursor(db=dbs.paths)}
        assert [from_u64(k) for k, _ in nodes] == sorted(n.seq for _, n in nodes)
        assert all(from_u64(k) == n.seq for k, n in nodes)
        expected: dict[bytes, bytes] = {}
        newest: dict[str, int] = {}
        for seq, node in nodes:
            pid_key = key_of(node.pattern_id, 300)
            nkey = pid_key + b"\0" + key_of(node.pattern_version, 150)
            newest[node.pattern_id] = max(newest.get(node.pattern_id, 0), node.seq)
            for pkey in node.parent_keys:
                expected[pkey + b"\0" + seq] = b""
            fhash = file_hash(node.file_path) if node.file_path else None
            if fhash is not None and pid_key.startswith(fhash + b"-"):
                expected[nkey] = seq + IMPLIED  # no file entry: the key says it
            else:
                expected[nkey] = seq
                if fhash is not None:
                    expected[fhash + FILE_MARK + seq] = b""
            if fhash is not None:
                assert paths[key_of(node.file_path, 400)] == fhash
        expected.update({key_of(pid, 300): u64(seq) for pid, seq in newest.items()})
        assert keys == expected
        assert len(paths) == len({n.file_path for _, n in nodes if n.file_path})

    lineage.store.read(check)


def test_a_tracked_file_keeps_its_keys_in_one_spot(tmp_path: Path) -> None:
    """The hook's pattern_ids start with core.identity.file_key, which is F(file_path) of the
    normalised path: an edit's node key, its newest entry and its parent link sit side by side
    under that prefix, and it needs no file entry (its node key says so)."""
    path = normalise_path(str(tmp_path / "src" / "app.py"))
    assert file_hash(path) == file_key(path).encode()
    store = Store.open(tmp_path / "s", map_size=64 * MIB)
    try:
        lineage = LineageStore(store)
        prefix = file_key(path)
        lineage.track(ev("created", f"{prefix}-v1-aaaa", path=path))
        lineage.track(ev("modified", f"{prefix}-v2-bbbb", parents=(f"{prefix}-v1-aaaa",), path=path))
        keys = store.read(lambda txn: [bytes(k) for k in txn.cursor(db=store.db("lineage_keys")).iternext(values=False)])
        assert len(keys) == 2 + 2 + 1 and all(k.startswith(f"{prefix}-v".encode()) for k in keys)
        assert [n["pattern_id"] for n in lineage.query(path)] == [f"{prefix}-v1-aaaa", f"{prefix}-v2-bbbb"]
        assert lineage.list_files()["files"][0]["versions"] == 2
    finally:
        store.close()


def test_an_event_writes_few_pages(tmp_path: Path) -> None:
    """The point of layout 2: into a store of 3,000 nodes over 100 files, a commit of 100 new
    versions (one per file, ids as the hook makes them, code small enough for no overflow page)
    writes under 2 pages per event (measured: ~1.3; layout 1 wrote 3.1-3.6, a leaf of each of
    its four trees per event and their branch pages)."""
    store = Store.open(tmp_path / "s", map_size=256 * MIB)
    try:
        lineage = LineageStore(store)
        paths = [f"/p/{f}.py" for f in range(100)]

        def version(v: int) -> list[TrackRequest]:
            return [ev("created" if v == 0 else "modified", f"{file_hash(p).decode()}-v{v}",
                       parents=(f"{file_hash(p).decode()}-v{v - 1}",) if v else (), path=p) for p in paths]

        for v in range(30):
            lineage.track_many(version(v))
        before = _written()
        lineage.track_many(version(30))
        pages = (_written() - before) / 4096 / len(paths)
        assert pages < 2.0, pages
    finally:
        store.close()


def _written() -> int:
    """Bytes this process has passed to write calls (LMDB writes each dirtied page once per commit)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar"))
