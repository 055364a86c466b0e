"""Event model: identity scheme, lineage chain, wire mapping."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pattern_tracker.model.events import PatternEvent, TrackRequest, build_event, from_track_request, to_batch_request, to_track_request
from pattern_tracker.core.identity import content_hash, event_id_for, pattern_id_for
from pattern_tracker.core.languages import detect_language
from pattern_tracker.core.store import Store


def test_first_version_is_created_then_modified_chain(store: Store) -> None:
    path = "/proj/app.py"
    events = []
    for code in ("a = 1\n", "a = 2\n", "a = 3\n"):
        version, parent, chash = store.write(lambda txn: store.assign_version(txn, path, code))
        events.append(build_event(file_path=path, code=code, version=version, parent_pattern_id=parent,
                                  chash=chash, source="watch", occurred_at=1.0))
    assert [e.event_type for e in events] == ["pattern_created", "pattern_modified", "pattern_modified"]
    assert [e.pattern_version for e in events] == ["1", "2", "3"]
    assert events[0].parent_pattern_ids == []
    assert events[1].parent_pattern_ids == [events[0].pattern_id]
    assert events[2].parent_pattern_ids == [events[1].pattern_id]
    assert events[1].edge_type == "modified_from" and events[1].transformation_type == "refactor"
    assert len({e.pattern_id for e in events}) == 3
    assert events[0].triggered_by == "file_watcher" and events[0].language == "python"


def test_unchanged_content_gets_no_version(store: Store) -> None:
    assert store.write(lambda txn: store.assign_version(txn, "/p/x.go", "package x")) is not None
    assert store.write(lambda txn: store.assign_version(txn, "/p/x.go", "package x")) is None
    # A revert to earlier content is a new version: the chain records it.
    store.write(lambda txn: store.assign_version(txn, "/p/x.go", "package y"))
    assigned = store.write(lambda txn: store.assign_version(txn, "/p/x.go", "package x"))
    assert assigned is not None and assigned[0] == 3


def test_identity_is_deterministic() -> None:
    chash = content_hash("x")
    pid = pattern_id_for("/a/b.py", 2, chash)
    assert pid == pattern_id_for("/a/./b.py", 2, chash)
    assert pid != pattern_id_for("/a/c.py", 2, chash)
    assert event_id_for(pid, "2") == event_id_for(pid, "2") != event_id_for(pid, "3")
    e1 = build_event(file_path="/a/b.py", code="x", version=1, parent_pattern_id=None, source="hook", occurred_at=5.0)
    e2 = build_event(file_path="/a/b.py", code="x", version=1, parent_pattern_id=None, source="hook", occurred_at=9.0)
    assert e1.event_id == e2.event_id and e1.pattern_id == e2.pattern_id


def test_wire_round_trip() -> None:
    ev = build_event(file_path="/a/b.ts", code="let x = 1", version=2, parent_pattern_id="p1", source="hook",
                     occurred_at=12.5, tool_name="Edit", tool_use_id="toolu_1", session_id="s1")
    req = to_track_request(ev)
    wire = msgspec.json.decode(msgspec.json.encode(req), type=TrackRequest)
    assert wire.pattern_data["code"] == "let x = 1" and wire.language == "typescript"
    back = from_track_request(wire)
    assert back == ev.__class__(**{**msgspec.structs.asdict(ev), "timings": {}})


def test_batch_mode_sequential_only_with_parent_and_child() -> None:
    a = build_event(file_path="/a.py", code="1", version=1, parent_pattern_id=None, source="watch", occurred_at=0)
    b = build_event(file_path="/a.py", code="2", version=2, parent_pattern_id=a.pattern_id, source="watch", occurred_at=0)
    c = build_event(file_path="/c.py", code="1", version=1, parent_pattern_id=None, source="watch", occurred_at=0)
    assert to_batch_request([a, b]).processing_mode == "sequential"
    assert to_batch_request([a, c]).processing_mode == "parallel"
    assert to_batch_request([b]).processing_mode == "parallel"


def test_pattern_event_rejects_unknown_fields_and_bad_types() -> None:
    ev = build_event(file_path="/a.py", code="1", version=1, parent_pattern_id=None, source="watch", occurred_at=0)
    doc = msgspec.to_builtins(ev)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({**doc, "extra": 1}, PatternEvent)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.event_type"):
        msgspec.convert({**doc, "event_type": "pattern_exploded"}, PatternEvent)


@pytest.mark.parametrize(
    ("name", "language"),
    [("a.py", "python"), ("a.js", "javascript"), ("a.ts", "typescript"), ("a.tsx", "typescript"), ("a.go", "go"),
     ("a.rs", "rust"), ("A.java", "java"), ("a.kt", "kotlin"), ("a.c", "c"), ("a.cpp", "cpp"), ("a.cs", "csharp"),
     ("a.swift", "swift"), ("a.rb", "ruby"), ("a.php", "php"), ("a.scala", "scala"), ("a.sh", "shell"),
     ("a.sql", "sql"), ("a.html", "html"), ("a.css", "css"), ("a.yaml", "yaml"), ("a.json", "json"),
     ("a.md", "markdown"), ("Dockerfile", "dockerfile"), ("Makefile", "makefile"), ("a.lua", "lua"),
     ("a.dart", "dart"), ("a.ex", "elixir"), ("a.hs", "haskell"), ("a.r", "r"), ("noext", None)],
)
def test_language_detection(name: str, language: str | None) -> None:
    assert detect_language(f"/x/{name}") == language


@given(st.text(max_size=200), st.integers(min_value=1, max_value=10_000))
def test_event_ids_fit_the_service_limits(code: str, version: int) -> None:
    ev = build_event(file_path="/some/deep/path/" + "d" * 300 + ".py", code=code, version=version,
                     parent_pattern_id="p" if version > 1 else None, source="stdin", occurred_at=0)
    assert len(ev.pattern_id) <= 255 and len(ev.pattern_version) <= 50 and len(ev.pattern_name) <= 255
