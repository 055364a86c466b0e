"""The stage naming scheme and the cheap per-stage recording helpers.

Each stage records per unit of work (an event for per-event stages, a batch for batched ones):
one span ``pattern_tracker.<stage>`` and bulk counter adds on
``pattern_tracker.stage.events_in|events_out|errors`` plus the histogram
``pattern_tracker.stage.duration`` (seconds), all with the attribute ``stage``. Per-event spans
are sampled (``telemetry.event_span_sample_rate``) because a span costs 15–30 µs; per-event
counts are kept locally and handed to the OTel counters in bulk. The in-process totals
(``StageTotals``) are kept even with the no-op providers: the status line and run summary read
them.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.trace import Span, Status, StatusCode

if TYPE_CHECKING:
    from pattern_tracker.telemetry import Telemetry

__all__ = ["FLUSH_EVERY", "STAGES", "STAGE_DURATION_BUCKETS_S", "Stage", "StageTotals", "create_stage_instruments"]

# Per-event counts are handed to the OTel counters once per this many calls (and on flush()).
FLUSH_EVERY = 256

STAGES: tuple[str, ...] = (
    "source",
    "validate",
    "redact",
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


def create_stage_instruments(meter: metrics.Meter) -> tuple[Any, Any, Any, Any]:
    """The four instruments every stage shares (told apart by the ``stage`` attribute):
    events in, events out, errors, duration."""
    return (
        meter.create_counter("pattern_tracker.stage.events_in", unit="{event}", description="Events entering a stage"),
        meter.create_counter("pattern_tracker.stage.events_out", unit="{event}", description="Events leaving a stage"),
        meter.create_counter("pattern_tracker.stage.errors", unit="{event}", description="Events that failed in a stage"),
        meter.create_histogram("pattern_tracker.stage.duration", unit="s", description="Time per unit of work",
                               explicit_bucket_boundaries_advisory=STAGE_DURATION_BUCKETS_S),
    )


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
    """Instruments of one stage. ``record`` adds in bulk; ``span`` opens one span per unit of work."""

    def __init__(self, telemetry: Telemetry, name: str) -> None:
        self.name = name
        self._tel = telemetry
        self._attrs = {"stage": name}
        self._span_name = f"pattern_tracker.{name}"
        self._in, self._out, self._err, self._dur = telemetry.stage_instruments()
        self.totals = StageTotals()
        self._pending_in = self._pending_out = self._pending_err = self._pending_calls = 0

    def record(self, events_in: int, events_out: int, errors: int = 0, duration_s: float | None = None) -> None:
        """Counts of one unit of work (a batch, a delivery), added to the OTel instruments at once."""
        t = self.totals
        t.events_in += events_in
        t.events_out += events_out
        t.errors += errors
        t.units += 1
        if events_in:
            self._in.add(events_in, self._attrs)
        if events_out:
            self._out.add(events_out, self._attrs)
        if errors:
            self._err.add(errors, self._attrs)
        if duration_s is not None:
            t.seconds += duration_s
            self._dur.record(duration_s, self._attrs)

    def count(self, events_in: int = 0, events_out: int = 0, errors: int = 0) -> None:
        """Per-event counts: kept locally and added to the OTel counters in bulk (see ``flush``)."""
        t = self.totals
        t.events_in += events_in
        t.events_out += events_out
        t.errors += errors
        self._pending_in += events_in
        self._pending_out += events_out
        self._pending_err += errors
        self._pending_calls += 1
        if self._pending_calls >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._pending_in:
            self._in.add(self._pending_in, self._attrs)
        if self._pending_out:
            self._out.add(self._pending_out, self._attrs)
        if self._pending_err:
            self._err.add(self._pending_err, self._attrs)
        self._pending_in = self._pending_out = self._pending_err = self._pending_calls = 0

    def observe(self, duration_s: float) -> None:
        self.totals.seconds += duration_s
        self.totals.units += 1
        self._dur.record(duration_s, self._attrs)

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

