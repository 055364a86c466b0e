"""LineageStore.list_files (the UI's listing) over a real LMDB store: order, paging, search, long paths."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pattern_tracker.core.store import MIB, Store
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_store import LineageStore

SUMMARY_KEYS = {"file_path", "language", "versions", "first_seen", "last_seen", "last_edit", "last_session",
                "last_tool", "last_pattern_id", "last_pattern_version", "last_generation"}
_ids = itertools.count()


def edits(lineage: LineageStore, path: str, n: int = 1, **data: Any) -> list[str]:
    """``n`` versions of ``path`` (a chain), each its own pattern; returns their ids."""
    ids: list[str] = []
    for v in range(1, n + 1):
        pid = f"p{next(_ids)}"
        lineage.track(TrackRequest(
            event_type="pattern_modified" if ids else "pattern_created", pattern_id=pid, pattern_version=str(v),
            file_path=path, language="python", tool_name=f"Tool{v}", parent_pattern_ids=ids[-1:],
            pattern_data={"code": f"# v{v}\n", **data}))
        ids.append(pid)
    return ids


def pages(lineage: LineageStore, search: str | None = None, limit: int = 2) -> list[list[str]]:
    """Every page's paths, following ``next`` to the end."""
    out: list[list[str]] = []
    after = None
    while True:
        page = lineage.list_files(search=search, after=after, limit=limit)
        out.append([f["file_path"] for f in page["files"]])
        after = page["next"]
        if after is None:
            return out
        assert after == out[-1][-1]


def flat(pages_: Iterable[list[str]]) -> list[str]:
    return [p for page in pages_ for p in page]


def test_a_file_summary_holds_its_versions_and_newest_edit(lineage: LineageStore) -> None:
    ids = edits(lineage, "/src/b.py", 3, session_id="sess-1", occurred_at=1_700_000_000.5)
    edits(lineage, "/src/a.py", 1)
    page = lineage.list_files()
    assert page["next"] is None and [f["file_path"] for f in page["files"]] == ["/src/a.py", "/src/b.py"]
    b = page["files"][1]
    assert set(b) == SUMMARY_KEYS
    assert (b["versions"], b["last_generation"], b["last_pattern_id"], b["last_pattern_version"]) == (3, 3, ids[2], "3")
    assert (b["language"], b["last_tool"], b["last_session"]) == ("python", "Tool3", "sess-1")
    assert b["last_edit"] == "2023-11-14T22:13:20.500000+00:00"  # occurred_at, in created_at's format
    assert b["first_seen"] <= b["last_seen"] and b["last_seen"].endswith("+00:00")
    a = page["files"][0]
    assert a["last_edit"] == a["last_seen"] and a["last_session"] is None  # no occurred_at: its created_at


def test_pages_follow_next_in_path_order_and_a_missing_after_lands_between(lineage: LineageStore) -> None:
    paths = ["/z.py", "/a.py", "/a.py.bak", "/a", "/m/n.py", "/é.py", "/B.py"]
    for p in paths:
        edits(lineage, p, 2)
    got = pages(lineage, limit=2)
    assert flat(got) == sorted(paths) and [len(p) for p in got] == [2, 2, 2, 1]
    assert [f["file_path"] for f in lineage.list_files(after="/a.py")["files"]][:1] == ["/a.py.bak"]
    assert [f["file_path"] for f in lineage.list_files(after="/l")["files"]][:1] == ["/m/n.py"]
    assert lineage.list_files(after="/\uffff") == {"files": [], "next": None}
    assert len(lineage.list_files(limit=0)["files"]) == 1  # a page holds at least one file


def test_search_is_a_case_insensitive_substring_and_pages_too(lineage: LineageStore) -> None:
    for p in ["/src/Models/User.py", "/src/views/user_list.py", "/src/ÄÖ/ärger.py", "/docs/readme.md", "/src/USER.txt"]:
        edits(lineage, p)
    assert flat(pages(lineage, "user", limit=1)) == ["/src/Models/User.py", "/src/USER.txt", "/src/views/user_list.py"]
    assert flat(pages(lineage, "äö")) == ["/src/ÄÖ/ärger.py"]
    assert flat(pages(lineage, "nothing-like-it")) == []
    page = lineage.list_files(search="user", after="/src/Models/User.py", limit=1)
    assert [f["file_path"] for f in page["files"]] == ["/src/USER.txt"] and page["next"] == "/src/USER.txt"


def test_a_search_sees_files_tracked_after_the_previous_search(lineage: LineageStore) -> None:
    edits(lineage, "/one/widget.py")
    assert flat(pages(lineage, "widget")) == ["/one/widget.py"]
    edits(lineage, "/two/widget.py")
    assert flat(pages(lineage, "WIDGET")) == ["/one/widget.py", "/two/widget.py"]
    edits(lineage, "/one/widget.py")  # a new version of a known file: its count changes, not the list
    assert [f["versions"] for f in lineage.list_files(search="widget")["files"]] == [2, 1]


def test_paths_too_long_for_a_key_are_listed_in_order_by_their_real_path(lineage: LineageStore) -> None:
    long_a = "/deep/" + "a" * 450 + ".py"
    long_n = "/deep/" + "n" * 450 + ".py"
    nul = "/odd/na\0me.py"
    short = ["/deep/b.py", "/deep/m.py", "/zeta.py"]
    for p in short:
        edits(lineage, p)
    edits(lineage, long_a, 2)
    edits(lineage, long_n, 1)
    edits(lineage, nul, 1)
    expected = sorted([*short, long_a, long_n, nul])
    for limit in (1, 2, 3, 50):
        assert flat(pages(lineage, limit=limit)) == expected
    assert [f["versions"] for f in lineage.list_files(search="aaaa")["files"]] == [2]
    assert flat(pages(lineage, "DEEP", limit=1)) == [p for p in expected if "deep" in p]
    assert [f["file_path"] for f in lineage.list_files(after=long_a, limit=1)["files"]] == ["/deep/b.py"]


def test_nodes_without_a_file_are_not_files(lineage: LineageStore) -> None:
    lineage.track(TrackRequest(event_type="pattern_created", pattern_id="nofile", pattern_data={"code": "x"}))
    assert lineage.list_files() == {"files": [], "next": None}


_path_chars = st.sampled_from(list("abAB/._-é€\x00") + ["\U0001f600"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=st.lists(st.one_of(st.text(_path_chars, min_size=1, max_size=6),
                                st.text(_path_chars, min_size=1, max_size=3).map(lambda s: s * 150)),
                      min_size=0, max_size=12, unique=True),
       search=st.one_of(st.none(), st.text(st.sampled_from(list("aAé/")), min_size=1, max_size=2)),
       limit=st.integers(1, 4))
def test_paging_matches_a_plain_model_of_the_files(tmp_path_factory, paths: list[str], search: str | None,
                                                   limit: int) -> None:
    store = Store.open(tmp_path_factory.mktemp("listing"), map_size=64 * MIB)
    try:
        lineage = LineageStore(store)
        for k, p in enumerate(paths):
            if k == len(paths) // 2:
                lineage.list_files(search="a")  # a kept list the later writes must update
            edits(lineage, p)
        want = sorted(p for p in paths if search is None or search.lower() in p.lower())
        got = pages(lineage, search, limit)
        assert flat(got) == want
        assert all(len(page) == limit for page in got[:-1])
    finally:
        store.close()


def test_the_search_list_follows_this_stores_writes_and_sees_another_writer(tmp_path) -> None:
    """The list a search keeps is updated by the store's own writes (no rebuild) and rebuilt after
    a write it was not told about (another process: another LineageStore on the same files)."""
    store = Store.open(tmp_path / "s", map_size=64 * MIB)
    try:
        mine, other = LineageStore(store), LineageStore(store)
        edits(mine, "/a/gadget.py")
        assert flat(pages(mine, "gadget")) == ["/a/gadget.py"]
        kept = mine.listing._names  # noqa: SLF001 - the kept list itself is what is under test
        edits(mine, "/b/gadget.py", 2)
        edits(mine, "/" + "long" * 120 + "/gadget.py")  # a hashed key: listed apart, not in the list
        updated = mine.listing._names  # noqa: SLF001
        assert updated is not kept and updated.keys == [b"/a/gadget.py", b"/b/gadget.py"]
        assert flat(pages(mine, "GADGET")) == ["/a/gadget.py", "/b/gadget.py", "/" + "long" * 120 + "/gadget.py"]
        assert mine.listing._names is updated  # current: no rebuild  # noqa: SLF001
        edits(other, "/c/gadget.py")  # not announced to ``mine``: its next search rebuilds
        assert flat(pages(mine, "gadget"))[2] == "/c/gadget.py"
        assert mine.listing._names is not updated  # noqa: SLF001
    finally:
        store.close()
