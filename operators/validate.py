"""``validate``: reject locally what the service would refuse, before it can spoil a batch.

The service validates a batch all-or-nothing, so one bad event would fail its whole batch:
catching the service's static rules here keeps good events flowing. Rejected events go to
``on_invalid`` (the dead letter) with the reason; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable

import reactivex.operators as ops
from reactivex import Observable

from pattern_tracker.model.events import EDGE_TYPES, EVENT_TYPES, TRANSFORMATION_TYPES, Decoded, PatternEvent

_LIMITS: tuple[tuple[str, int], ...] = (
    ("pattern_id", 255),
    ("pattern_name", 255),
    ("pattern_version", 50),
    ("pattern_type", 100),
    ("language", 50),
    ("triggered_by", 100),
)


_TYPES = frozenset(EVENT_TYPES)
_EDGES_OR_NONE = frozenset((*EDGE_TYPES, None))
_TRANSFORMATIONS_OR_NONE = frozenset((*TRANSFORMATION_TYPES, None))
_NEED_A_PARENT = frozenset(("pattern_modified", "pattern_forked"))


def validate_event(ev: PatternEvent) -> str | None:
    """The reason ``ev`` would be refused, or None when it is valid (the policy, no Rx).

    Nearly every event is valid: one expression answers those (a replay validates every event,
    and the rule-by-rule walk below costs several times more); anything it does not pass plainly
    gets the walk, which names the rule. ``plainly_valid(ev)`` implies ``refusal(ev) is None``
    (tests/test_batch_validate.py checks it on generated events).
    """
    return None if plainly_valid(ev) else refusal(ev)


def plainly_valid(ev: PatternEvent) -> bool:
    """True when ``ev`` breaks none of the rules of :func:`refusal` (False: ask it why)."""
    try:
        t = ev.event_type
        parents = ev.parent_pattern_ids
        return (t in _TYPES and 0 < len(ev.pattern_id) <= 255 and 0 < len(ev.pattern_version) <= 50
                and len(ev.pattern_name) <= 255 and len(ev.pattern_type) <= 100 and len(ev.triggered_by) <= 100
                and (ev.language is None or len(ev.language) <= 50)
                and ev.edge_type in _EDGES_OR_NONE and ev.transformation_type in _TRANSFORMATIONS_OR_NONE
                and (t not in _NEED_A_PARENT or bool(parents)) and (t != "pattern_merged" or len(parents) >= 2)
                and all(parents))
    except TypeError:  # a field of the wrong type (None where a str belongs): the walk decides
        return False


def parents_valid(ev: PatternEvent) -> bool:
    """The rules of :func:`refusal` no single field states: all an event a msgspec decoder made
    (``Decoded``) can break, since the decoder enforced the field constraints of ``PatternEvent``
    (tests/test_batch_validate.py checks this on generated, encoded and decoded events)."""
    t = ev.event_type
    parents = ev.parent_pattern_ids
    return (t not in _NEED_A_PARENT or bool(parents)) and (t != "pattern_merged" or len(parents) >= 2) and all(parents)


def refusal(ev: PatternEvent) -> str | None:
    """The first rule ``ev`` breaks, in the service's order, or None."""
    if ev.event_type not in EVENT_TYPES:
        return f"event_type {ev.event_type!r} is not one of {', '.join(EVENT_TYPES)}"
    if not ev.pattern_id:
        return "pattern_id is empty"
    if not ev.pattern_version:
        return "pattern_version is empty"
    for field, limit in _LIMITS:
        value = getattr(ev, field)
        if value is not None and len(value) > limit:
            return f"{field} is longer than {limit} characters"
    if ev.edge_type is not None and ev.edge_type not in EDGE_TYPES:
        return f"edge_type {ev.edge_type!r} is not one of {', '.join(EDGE_TYPES)}"
    if ev.transformation_type is not None and ev.transformation_type not in TRANSFORMATION_TYPES:
        return f"transformation_type {ev.transformation_type!r} is not one of {', '.join(TRANSFORMATION_TYPES)}"
    if ev.event_type in ("pattern_modified", "pattern_forked") and not ev.parent_pattern_ids:
        # a fork is tracked like a modification; without a parent the service refuses it (400)
        return f"{ev.event_type} needs a parent pattern id"
    if ev.event_type == "pattern_merged" and len(ev.parent_pattern_ids) < 2:
        return "pattern_merged needs at least two parent pattern ids"
    if any(not p for p in ev.parent_pattern_ids):
        return "parent_pattern_ids holds an empty id"
    return None


def validate(on_invalid: Callable[[PatternEvent, str], None]) -> Callable[[Observable[list[PatternEvent]]], Observable[list[PatternEvent]]]:
    """Pass the valid events of each chunk on; hand each invalid one, with its reason, to ``on_invalid``.

    Args:
        on_invalid: receives (event, reason) for every rejected event; must not raise.

    Returns:
        An operator function over chunks (lists) of PatternEvents; a chunk left empty is dropped.
    """

    def check(chunk: list[PatternEvent]) -> list[PatternEvent]:
        plain = parents_valid if type(chunk) is Decoded else plainly_valid
        valid = [ev for ev in chunk if plain(ev)]
        if len(valid) == len(chunk):
            return chunk  # the usual chunk: every event plainly valid, one pass
        valid = []
        for ev in chunk:
            reason = validate_event(ev)
            if reason is None:
                valid.append(ev)
            else:
                on_invalid(ev, reason)
        return valid

    return lambda source: source.pipe(ops.map(check), ops.filter(bool))
