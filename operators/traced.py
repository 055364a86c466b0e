"""``traced``: wrap a stage's operator with its telemetry.

Counts events in and out of the wrapped operator (per-event counts are added to OTel in bulk)
and emits one span per unit the operator emits: always for a batch (a list), sampled for a
single event (``telemetry.event_span_sample_rate``), since a span costs 15–30 µs. A span covers
the time from the first input of that unit to its emission, so for ``batch`` it is the time the
batch spent filling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import reactivex.operators as ops
from reactivex import Observable

from pattern_tracker.telemetry import Stage

A = TypeVar("A")
B = TypeVar("B")


def _size(item: Any) -> int:
    return len(item) if isinstance(item, list) else 1


def traced(stage: Stage, operator: Callable[[Observable[A]], Observable[B]]) -> Callable[[Observable[A]], Observable[B]]:
    """Examples:
        >>> source.pipe(traced(telemetry.stage("batch"), batch(100, 0.05)))

    Args:
        stage: the stage's instruments (``Telemetry.stage(name)``).
        operator: the operator to observe; its behaviour is unchanged.

    Returns:
        The same operator, counted and traced.
    """

    def _traced(source: Observable[A]) -> Observable[B]:
        def subscribe(observer: Any, scheduler: Any = None) -> Any:
            opened: list[float] = []  # [perf_counter, wall clock] of the first input of the open unit

            def on_in(item: A) -> None:
                stage.count(events_in=_size(item))
                if not opened:
                    opened.extend((time.perf_counter(), time.time()))

            def on_out(item: B) -> None:
                n = _size(item)
                stage.count(events_out=n)
                if opened:
                    started, wall = opened
                    opened.clear()
                else:  # one input gave several units (a large chunk split into batches)
                    started, wall = time.perf_counter(), time.time()
                if isinstance(item, list) or stage.sample():
                    duration = time.perf_counter() - started
                    stage.observe(duration)
                    stage.emit_span(wall, wall + duration, **{"pattern_tracker.model.events": n})

            return source.pipe(ops.do_action(on_in), operator, ops.do_action(on_out)).subscribe(observer, scheduler=scheduler)

        return Observable(subscribe)

    return _traced
