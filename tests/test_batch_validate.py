"""The batch operator on Rx virtual time, and the validation policy alone."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest
from reactivex.testing import ReactiveTest, TestScheduler

from pattern_tracker.operators.batch import batch
from pattern_tracker.operators.validate import validate, validate_event
from pattern_tracker.model.events import build_event

T0 = 300  # virtual time of "0" in these tests: after the scheduler subscribes (200)


def on_next(t: float, v: object):
    return ReactiveTest.on_next(T0 + t, v)


def on_completed(t: float):
    return ReactiveTest.on_completed(T0 + t)


def run(messages, size: int, linger: float):
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    emitted: list[tuple[float, list]] = []
    results = scheduler.start(lambda: xs.pipe(batch(size, linger, scheduler)), disposed=10_000)
    for m in results.messages:
        if m.value.kind == "N":
            emitted.append((m.time - T0, m.value.value))
    return emitted, results.messages[-1]


def test_batch_by_count_and_by_linger_from_first_item() -> None:
    # The stream carries chunks (lists). Virtual ticks are seconds (TestScheduler: 1 tick = 1 s).
    emitted, last = run([on_next(10, [1]), on_next(11, [2]), on_next(12, [3]), on_next(20, [4]), on_next(100, [5]),
                         on_completed(200)], size=3, linger=5)
    assert emitted == [(12, [1, 2, 3]), (25, [4]), (105, [5])]
    assert last.value.kind == "C"


def test_batch_regroups_chunks_and_times_the_leftover_from_its_chunk() -> None:
    # 7 items in one chunk: two full batches at once, the leftover waits its linger from t=10.
    emitted, _ = run([on_next(10, list(range(7))), on_next(12, [7]), on_completed(100)], size=3, linger=5)
    assert emitted == [(10, [0, 1, 2]), (10, [3, 4, 5]), (15, [6, 7])]
    # A chunk that tops up an open batch does not restart its timer.
    emitted, _ = run([on_next(10, [0]), on_next(13, [1]), on_completed(100)], size=5, linger=5)
    assert emitted == [(15, [0, 1])]


def test_batch_never_emits_empty_lists_and_flushes_on_completion() -> None:
    emitted, last = run([on_next(10, ["a"]), on_next(10, []), on_completed(11)], size=10, linger=50)
    assert emitted == [(11, ["a"])]
    emitted, _ = run([on_completed(50)], size=10, linger=1)
    assert emitted == []


def test_batch_timer_restarts_for_each_batch() -> None:
    emitted, _ = run([on_next(1, ["a"]), on_next(2, ["b"]), on_next(3, ["c"]), on_next(4, ["d"]), on_completed(100)],
                     size=2, linger=10)
    assert emitted == [(2, ["a", "b"]), (4, ["c", "d"])]


def test_batch_rejects_zero_size() -> None:
    with pytest.raises(ValueError):
        batch(0, 1)


def _ev(**over):
    ev = build_event(file_path="/a.py", code="x", version=2, parent_pattern_id="p1", source="watch", occurred_at=0)
    return msgspec.structs.replace(ev, **over)


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"event_type": "pattern_bogus"}, "event_type"),
        ({"pattern_id": ""}, "pattern_id is empty"),
        ({"pattern_version": ""}, "pattern_version is empty"),
        ({"pattern_id": "x" * 256}, "pattern_id is longer than 255"),
        ({"pattern_version": "9" * 51}, "pattern_version is longer than 50"),
        ({"language": "l" * 51}, "language is longer than 50"),
        ({"edge_type": "sideways"}, "edge_type"),
        ({"transformation_type": "magic"}, "transformation_type"),
        ({"parent_pattern_ids": []}, "needs a parent"),
        ({"event_type": "pattern_forked", "parent_pattern_ids": []}, "pattern_forked needs a parent"),
        ({"event_type": "pattern_merged"}, "at least two"),
        ({"parent_pattern_ids": [""]}, "empty id"),
    ],
)
def test_validate_event_rejects(over: dict, fragment: str) -> None:
    reason = validate_event(_ev(**over))
    assert reason is not None and fragment in reason


def test_validate_event_accepts_a_good_event() -> None:
    assert validate_event(_ev()) is None


def test_validate_operator_routes_invalid_events() -> None:
    scheduler = TestScheduler()
    good, bad = _ev(), _ev(parent_pattern_ids=[])
    rejected: list[tuple[str, str]] = []
    xs = scheduler.create_hot_observable(on_next(5, [good, bad]), on_next(6, [bad]), on_completed(7))
    results = scheduler.start(lambda: xs.pipe(validate(lambda e, r: rejected.append((e.event_id, r)))))
    # The valid part of each chunk goes on; a chunk left empty is dropped.
    assert [m.value.value for m in results.messages if m.value.kind == "N"] == [[good]]
    assert rejected == [(bad.event_id, "pattern_modified needs a parent pattern id")] * 2


# Mostly valid values, so that the one rule an example breaks is what the fast path must catch.
_TEXT = st.sampled_from(["x"] * 12 + [None, "", "p" * 50, "p" * 51, "q" * 100, "q" * 101, "r" * 255, "r" * 256])


def _built(event_type, pattern_id, pattern_version, pattern_name, pattern_type, language, triggered_by,
           edge_type, transformation_type, parents):
    from pattern_tracker.model.events import PatternEvent

    # The constructor does not check types: odd values reach the rules.
    return PatternEvent(event_id="e", event_type=event_type, pattern_id=pattern_id, pattern_version=pattern_version,
                        pattern_name=pattern_name, pattern_type=pattern_type, language=language,
                        triggered_by=triggered_by, edge_type=edge_type, transformation_type=transformation_type,
                        parent_pattern_ids=parents)


# Events of every type with mostly valid fields, each field sometimes breaking its rule.
_EVENTS = st.builds(
    _built,
    event_type=st.sampled_from(["pattern_created", "pattern_modified", "pattern_forked", "pattern_merged",
                                "pattern_applied", "pattern_exploded"]),
    pattern_id=_TEXT, pattern_version=_TEXT, pattern_name=_TEXT, pattern_type=_TEXT, language=_TEXT,
    triggered_by=_TEXT,
    edge_type=st.sampled_from([None, "modified_from", "sideways"]),
    transformation_type=st.sampled_from([None, "refactor", "magic"]),
    parents=st.lists(st.sampled_from(["", "a", "b"]), max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(ev=_EVENTS)
def test_the_fast_path_never_passes_what_the_rules_refuse(ev) -> None:
    """validate_event answers most events in one expression: it must agree with the rule walk."""
    from pattern_tracker.operators.validate import plainly_valid, refusal

    try:
        expected = refusal(ev)
    except TypeError:  # the walk itself cannot read it (None for a required str): not a real event
        return
    if plainly_valid(ev):
        assert expected is None
    assert validate_event(ev) == expected


@settings(max_examples=400, deadline=None)
@given(built=_EVENTS)
def test_a_decoded_event_breaks_only_the_rules_no_field_states(built) -> None:
    """What the archive's decoder accepts (a ``Decoded`` chunk) needs only ``parents_valid``: it
    agrees with the whole rule walk on every event that decodes."""
    from pattern_tracker.model.events import Decoded, PatternEvent
    from pattern_tracker.operators.validate import parents_valid, refusal

    try:
        ev = msgspec.msgpack.decode(msgspec.msgpack.encode(built), type=PatternEvent)  # as Archive.chunks decodes
    except msgspec.ValidationError:
        return  # the decoder refuses it: it never reaches validation as a decoded event
    assert parents_valid(ev) == (refusal(ev) is None)
    rejected: list[str] = []
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(1, Decoded([ev])), on_completed(2))
    results = scheduler.start(lambda: xs.pipe(validate(lambda e, r: rejected.append(r))))
    passed = [m.value.value for m in results.messages if m.value.kind == "N"]
    assert (passed, rejected) == (([[ev]], []) if refusal(ev) is None else ([], [refusal(ev)]))
