"""Hook payload → changes (against the shared fixtures), and the spool as a durable FIFO."""

from __future__ import annotations

from pathlib import Path

import pytest

from pattern_tracker.model.events import build_event
from pattern_tracker.core.capture import PayloadError, changes_from_payload
from pattern_tracker.state.ingest import Ingest
from pattern_tracker.state.spool import Spool, SpoolLimits
from pattern_tracker.core.store import Store, u64
from pattern_tracker.core.counters import Counters
from tests.hooktools import payloads


def no_disk(_: str) -> str | None:
    return None


def test_fixture_payloads_give_the_right_changes() -> None:
    by_tool: dict[str, list] = {}
    for p in payloads():
        by_tool.setdefault(p["tool_name"], []).append(changes_from_payload(p, 1.0, no_disk))
    write = by_tool["Write"][0][0]
    assert write.path == "/home/dev/shop/cart.py" and "class Cart" in write.code
    assert write.session_id == "4f0c2a9e-7d1b-4a53-9a8e-2f6c1d0b9e71" and write.tool_use_id.startswith("toolu_")
    edit = by_tool["Edit"][0][0]
    assert "round(sum(prices[i] for i in self.items), 2)" in edit.code  # applied to originalFile
    multi = by_tool["MultiEdit"][0][0]
    assert "class ShoppingCart:" in multi.code and 'currency: str = "EUR"' in multi.code
    nb = by_tool["NotebookEdit"][0][0]
    assert "#" in nb.path and nb.path.endswith(".ipynb#" + payloads()[3]["tool_input"]["cell_id"])
    assert by_tool["Bash"] == [[]]
    assert len(by_tool["Write"]) == 2  # the one with newer extra fields is tolerated


def test_edit_prefers_the_file_on_disk(tmp_path: Path) -> None:
    p = next(p for p in payloads() if p["tool_name"] == "Edit")
    target = tmp_path / "cart.py"
    target.write_text("ON DISK\n")
    p = {**p, "tool_input": {**p["tool_input"], "file_path": str(target)}}
    [change] = changes_from_payload(p, 1.0, lambda path: Path(path).read_text())
    assert change.code == "ON DISK\n"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([], "must be a JSON object"),
        ({"tool_name": 3}, "tool_name must be a string"),
        ({"tool_name": "Write", "tool_input": "x"}, "tool_input must be an object"),
        ({"tool_name": "Write", "tool_input": {"file_path": 1, "content": ""}}, "file_path must be a string"),
        ({"tool_name": "Write", "tool_input": {"file_path": "/a"}}, "content must be a string"),
        ({"tool_name": "Edit", "tool_input": {"file_path": "/a", "old_string": "x", "new_string": "y"}}, "no original"),
        ({"tool_name": "Edit", "tool_input": {"file_path": "/a", "old_string": "zz", "new_string": "y"},
          "tool_response": {"originalFile": "abc"}}, "not found"),
        ({"tool_name": "MultiEdit", "tool_input": {"file_path": "/a", "edits": []}, "tool_response": {"originalFile": "a"}},
         "non-empty list"),
    ],
)
def test_bad_payloads_name_the_problem(payload: object, fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment):
        changes_from_payload(payload, 1.0, no_disk)


def _events(n: int) -> list:
    return [build_event(file_path=f"/f{i}.py", code=str(i), version=1, parent_pattern_id=None, source="stdin",
                        occurred_at=float(i)) for i in range(n)]


def test_spool_is_fifo_deduplicated_and_acked_by_id(store: Store) -> None:
    spool = Spool(store)
    evs = _events(5)
    assert len(spool.enqueue(evs, 10.0)) == 5
    assert spool.enqueue(evs[:2], 11.0) == []  # already queued: not twice
    assert spool.size() == 5
    entries = spool.read_batch(0, 10)
    assert [e.event.event_id for _, e in entries] == [e.event_id for e in evs]
    assert spool.ack([evs[1].event_id, evs[3].event_id, "unknown"]) == 2
    assert [e.event.event_id for _, e in spool.read_batch(0, 10)] == [evs[0].event_id, evs[2].event_id, evs[4].event_id]
    first_seq = entries[0][0]
    assert [e.event.event_id for _, e in spool.read_batch(first_seq, 1)] == [evs[2].event_id]
    assert spool.oldest_enqueued_at() == 10.0


def test_spool_survives_reopen(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "d")
    Spool(s).enqueue(_events(3), 1.0)
    s.close()
    s2 = Store.open(tmp_path / "d")
    try:
        assert Spool(s2).size() == 3
    finally:
        s2.close()


def test_ingest_versions_and_spools_in_one_step(store: Store) -> None:
    from pattern_tracker.core.capture import Change

    ingest = Ingest(store)
    e1 = ingest.accept_changes([Change(path="/x.py", code="1", occurred_at=1)], "watch", 1.0)
    e2 = ingest.accept_changes([Change(path="/x.py", code="1", occurred_at=2), Change(path="/x.py", code="2", occurred_at=2)],
                               "watch", 2.0)
    assert [e.pattern_version for e in e1 + e2] == ["1", "2"]
    assert ingest.unchanged == 1
    assert e2[0].parent_pattern_ids == [e1[0].pattern_id]
    assert ingest.spool.size() == 2


def test_store_files_are_private_and_map_grows(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "priv", map_size=1 << 20)
    try:
        assert (tmp_path / "priv").stat().st_mode & 0o777 == 0o700
        for name in ("data.mdb", "lock.mdb"):
            assert (tmp_path / "priv" / name).stat().st_mode & 0o777 == 0o600
        spool = Spool(s, SpoolLimits(bound=10_000))
        spool.enqueue(_events(3000), 1.0)  # far more than 1 MiB
        assert s.map_size() > 1 << 20 and spool.size() == 3000
        assert s.verify() == []
    finally:
        s.close()


def test_store_refuses_to_grow_past_the_limit(tmp_path: Path) -> None:
    from pattern_tracker.core.store import StoreError

    s = Store.open(tmp_path / "small", map_size=1 << 20, max_map_size=2 << 20)
    try:
        with pytest.raises(StoreError, match="is full"):
            Spool(s, SpoolLimits(bound=10_000)).enqueue([build_event(file_path=f"/f{i}.py", code="x" * 4000, version=1, parent_pattern_id=None,
                                          source="stdin", occurred_at=0) for i in range(2000)], 1.0)
        assert Spool(s).size() == 0  # the failed transaction left nothing half-written
    finally:
        s.close()


WRITER = """
import sys
from pattern_tracker.core.capture import Change
from pattern_tracker.state.ingest import Ingest
from pattern_tracker.core.store import Store
from pattern_tracker.state.spool import Spool, SpoolLimits
store = Store.open(sys.argv[1])
ingest = Ingest(store, Spool(store, SpoolLimits(bound=10_000)))
for i in range(100):
    ingest.accept_changes([Change(path="/shared/file.py", code=f"{sys.argv[2]}-{i}", occurred_at=0)], "hook", 0.0)
"""


def test_several_processes_write_one_store_safely(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "shared-store"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(data), f"p{n}"]) for n in range(6)]
    assert [p.wait(60) for p in procs] == [0] * 6
    s = Store.open(data)
    try:
        entries = Spool(s).read_batch(0, 10_000)
        assert len(entries) == 600 and s.verify() == []
        # One file, six writers: versions 1..600 with no gap and no repeat, each the child of the one before.
        events = sorted((e.event for _, e in entries), key=lambda e: int(e.pattern_version))
        assert [int(e.pattern_version) for e in events] == list(range(1, 601))
        assert all(b.parent_pattern_ids == [a.pattern_id] for a, b in zip(events, events[1:]))
    finally:
        s.close()


def test_counters_sum_by_name_over_a_window_and_prune(store: Store) -> None:
    from pattern_tracker.core.counters import Counters

    c = Counters(store)
    t = 1_700_000_000.0  # bucket numbers with NUL bytes inside them
    c.bump({"spool.entered": 3, "spool.expired": 1}, t)
    c.bump({"spool.entered": 2}, t + 120)
    c.bump({"other": 7, "zero": 0}, t + 120)
    assert c.totals() == {"spool.entered": 5, "spool.expired": 1, "other": 7}
    assert c.totals(prefix="spool.") == {"spool.entered": 5, "spool.expired": 1}
    assert c.totals(since=t + 60) == {"spool.entered": 2, "other": 7}
    assert c.prune(older_than=t + 60) == 2
    assert c.totals() == {"spool.entered": 2, "other": 7}


def test_an_undecodable_spool_entry_is_quarantined_not_blocking(store: Store) -> None:
    spool = Spool(store)
    evs = _events(3)
    spool.enqueue(evs, time_now := 1_000_000.0)
    seq = spool.read_batch(0, 10)[1][0]
    store.write(lambda txn: txn.put(u64(seq), b"[1, {broken", db=store.db("spool")))
    entries = spool.read_batch(0, 10)
    assert [e.event.event_id for _, e in entries] == [evs[0].event_id, evs[2].event_id]
    assert spool.size() == 2 and store.entries("quarantine") == 1
    raw = store.read(lambda txn: txn.get(u64(seq), db=store.db("quarantine")))
    assert raw == b"[1, {broken"
    # The event's id no longer points at the moved entry: it can be queued again.
    assert spool.enqueue([evs[1]], time_now) == [evs[1]]
    assert Counters(store).totals()["spool.quarantined"] == 1
