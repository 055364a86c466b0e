"""A change that could be spooled but never stored or sent is refused by every door it can come in
through (hook payload, stdin record; the Python API: tests/test_status_facade.py), by one check
(core.capture.check_storable)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pattern_tracker.core.capture import PayloadError, changes_from_payload
from pattern_tracker.usecases.archive_gen import generate
from pattern_tracker.sources.stdin import RecordError, parse_record

UNSTORABLE = [
    ({"file_path": "/p/a\0b.py", "code": "x"}, "file path holds a NUL character"),
    ({"file_path": "", "code": "x"}, "file path is empty"),  # was tracked as a version of the current directory
    ({"file_path": "  ", "code": "x"}, "file path is empty"),
    ({"file_path": "/p/a.py", "code": "\ud800"}, "code is not valid Unicode"),
    ({"file_path": "/p/\udcff.py", "code": "x"}, "file path is not valid Unicode"),
    ({"file_path": "/p/a.py", "code": "x", "reason": "\ud800"}, "reason is not valid Unicode"),
]


@pytest.mark.parametrize(("record", "says"), UNSTORABLE)
def test_a_stdin_record_that_cannot_be_stored_is_refused(record: dict, says: str) -> None:
    with pytest.raises(RecordError, match=f"^change record: {says}"):
        parse_record(record, 1.0, lambda _path: None)


@pytest.mark.parametrize(("record", "says"), [u for u in UNSTORABLE if "reason" not in u[0]])
def test_a_hook_payload_that_cannot_be_stored_is_refused(record: dict, says: str) -> None:
    payload = {"tool_name": "Write", "tool_input": {"file_path": record["file_path"], "content": record["code"]}}
    with pytest.raises(PayloadError, match=f"^{says}"):
        changes_from_payload(payload, 1.0, lambda _path: None)


def test_storable_text_goes_through_both_doors() -> None:
    record = {"file_path": "/p/é 1.py", "code": "ü = '\\x00 in code is fine'\n"}
    [change] = parse_record(record, 1.0, lambda _path: None)
    assert change.path == record["file_path"] and change.code == record["code"]
    payload = {"tool_name": "Write", "tool_input": {"file_path": record["file_path"], "content": record["code"]}}
    assert [c.code for c in changes_from_payload(payload, 1.0, lambda _path: None)] == [record["code"]]


def test_a_full_pattern_event_with_a_nul_file_path_is_refused() -> None:
    event = msgspec.to_builtins(next(iter(generate(1, 1, 7))))
    assert parse_record(event, 1.0, lambda _path: None).file_path == event["file_path"]
    with pytest.raises(RecordError, match="^pattern event: file path holds a NUL character$"):
        parse_record({**event, "file_path": event["file_path"] + "\0x"}, 1.0, lambda _path: None)


@pytest.mark.parametrize("event_id", ["", "e" * 600])
def test_a_full_pattern_event_whose_id_the_spool_cannot_key_is_refused(event_id: str) -> None:
    """The spool keys an event by its id (LMDB: at most 511 bytes): an empty or huge one crashed the
    run (`internal error: BadValsizeError`, no summary) instead of being one rejected line."""
    event = msgspec.to_builtins(next(iter(generate(1, 1, 7))))
    with pytest.raises(RecordError, match="^pattern event: event_id must be 1 to 256 bytes$"):
        parse_record({**event, "event_id": event_id}, 1.0, lambda _path: None)


@pytest.mark.parametrize("occurred_at", [1e300, -1.0])
def test_a_full_pattern_event_whose_time_is_not_a_date_is_refused(occurred_at: float) -> None:
    """A plain change's occurred_at was checked at the door; a full PatternEvent's was not: 1e300
    was stored, and `query --file` then failed on it (internal error: OverflowError)."""
    event = msgspec.to_builtins(next(iter(generate(1, 1, 7))))
    with pytest.raises(RecordError, match=r"^pattern event: occurred_at \(epoch seconds\) must be"):
        parse_record({**event, "occurred_at": occurred_at}, 1.0, lambda _path: None)


def test_a_stored_time_past_the_year_9999_is_shown_not_crashed_on() -> None:
    """Stores written before times were checked may hold one: shown as a number, not a traceback."""
    from pattern_tracker.core.timefmt import iso

    assert iso(1e300) == "1e+300 (not a date)"
    assert iso(1_700_000_000.0) == "2023-11-14T22:13:20Z"


def test_query_shows_a_stored_edit_time_past_the_year_9999(tmp_path: Path) -> None:
    """A node stored before edit times were checked, with occurred_at 1e300: `query --file` failed
    with 'internal error: OverflowError'; it shows the number instead."""
    from pattern_tracker.core.store import Store
    from pattern_tracker.model.events import to_track_request
    from pattern_tracker.sinks.lineage_store import LineageStore
    from tests.clitools import cli_env, run_cli

    event = next(iter(generate(1, 1, 7)))
    event.occurred_at = 1e300
    store = Store.open(tmp_path / "data")
    try:
        [result] = LineageStore(store).track_many([to_track_request(event)])
        assert isinstance(result, dict), result
    finally:
        store.close()
    out = run_cli("query", "--file", str(event.file_path), env=cli_env(tmp_path / "data"))
    assert out.returncode == 0 and "1e+300 (not a date)" in out.stdout, (out.stdout, out.stderr)
