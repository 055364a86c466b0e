"""The stage naming scheme and the cheap per-stage recording helpers.

Each stage records per unit of work (an event for per-event stages, a batch for batched ones):
one span ``pattern_tracker.<stage>``, counts on ``pattern_tracker.stage.events_in|events_out|errors``
and the histogram ``pattern_tracker.stage.duration`` (seconds), all with the attribute ``stage``.
Per-event spans are sampled (``telemetry.event_span_sample_rate``) because a span costs 15–30 µs.
Counting costs no OTel call: the counts are the in-process totals (``StageTotals``, which the
status line and run summary read too), observed when a metric reader collects, so a scrape or an
export sees every event counted so far, however few and slow the events are.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.trace import Span, Status, StatusCode

if TYPE_CHECKING:
    from pattern_tracker.telemetry import Telemetry

__all__ = ["STAGES", "STAGE_DURATION_BUCKETS_S", "Stage", "StageTotals", "create_stage_instruments"]

STAGES: tuple[str, ...] = (
    "source",
    "validate",
    "batch",
    "circuit_gate",
    "retry",
    "deliver",
    "spill",
    "replay",
    "dead_letter",
    "hook",
)

# Histogram bucket boundaries (seconds) of ``pattern_tracker.stage.duration``.
STAGE_DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


def create_stage_instruments(meter: metrics.Meter, stages: Callable[[], Iterable[Stage]]) -> Any:
    """The instruments every stage shares, told apart by the ``stage`` attribute: events in, out
    and errors, observed from the ``stages``' totals at each collection (a stage reports once it
    counted something); returns the duration histogram, recorded per unit of work."""

    def observer(field: str) -> Callable[[Any], list[metrics.Observation]]:
        def observe(_options: Any = None) -> list[metrics.Observation]:
            return [metrics.Observation(n, st.attributes) for st in stages() if (n := getattr(st.totals, field))]
        return observe

    for field, description in (("events_in", "Events entering a stage"), ("events_out", "Events leaving a stage"),
                               ("errors", "Events that failed in a stage")):
        meter.create_observable_counter(f"pattern_tracker.stage.{field}", [observer(field)], unit="{event}",
                                        description=description)
    return meter.create_histogram("pattern_tracker.stage.duration", unit="s", description="Time per unit of work",
                                  explicit_bucket_boundaries_advisory=STAGE_DURATION_BUCKETS_S)


class StageTotals:
    """Plain counters of one stage in this process (read by the status line and summaries)."""

    __slots__ = ("events_in", "events_out", "errors", "units", "seconds")

    def __init__(self) -> None:
        self.events_in = 0
        self.events_out = 0
        self.errors = 0
        self.units = 0
        self.seconds = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__slots__}


class Stage:
    """Instruments of one stage. ``count`` adds to its totals, ``observe`` times a unit of work,
    ``span`` opens one span per unit of work."""

    def __init__(self, telemetry: Telemetry, name: str) -> None:
        self.name = name
        self._tel = telemetry
        self.attributes = {"stage": name}
        self._span_name = f"pattern_tracker.{name}"
        self._dur = telemetry.stage_duration()
        self.totals = StageTotals()

    def count(self, events_in: int = 0, events_out: int = 0, errors: int = 0) -> None:
        """Events in, out and failed; OTel reads them at its next collection."""
        t = self.totals
        t.events_in += events_in
        t.events_out += events_out
        t.errors += errors

    def observe(self, duration_s: float) -> None:
        self.totals.seconds += duration_s
        self.totals.units += 1
        self._dur.record(duration_s, self.attributes)

    @contextlib.contextmanager
    def span(self, sampled: bool = True, **attributes: Any) -> Iterator[Span | None]:
        """A span for one unit of work; ``sampled=False`` skips it (per-event stages sample)."""
        if not sampled or not self._tel.tracing:
            yield None
            return
        attrs = {"pattern_tracker.stage": self.name, **attributes}
        with self._tel.tracer.start_as_current_span(self._span_name, attributes=attrs) as span:
            yield span

    def sample(self) -> bool:
        rate = self._tel.event_span_sample_rate
        return rate >= 1.0 or (rate > 0.0 and random.random() < rate)

    def mark(self, events: int, error: str | None = None, **attributes: Any) -> None:
        """A span for a unit of work that is a decision, not a wait (a refused or spilled batch,
        a dead letter, a replayed chunk): it starts and ends now, under the active span."""
        if not self._tel.tracing:
            return
        now = time.time_ns()
        attrs = {"pattern_tracker.stage": self.name, "pattern_tracker.model.events": events, **attributes}
        span = self._tel.tracer.start_span(self._span_name, attributes=attrs, start_time=now)
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=now)

    def emit_span(self, start_s: float, end_s: float, error: str | None = None, **attributes: Any) -> None:
        """A span with explicit times (work measured elsewhere, e.g. in the hook process)."""
        if not self._tel.tracing:
            return
        attrs = {"pattern_tracker.stage": self.name, **attributes}
        span = self._tel.tracer.start_span(self._span_name, attributes=attrs, start_time=int(start_s * 1e9))
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=int(end_s * 1e9))

