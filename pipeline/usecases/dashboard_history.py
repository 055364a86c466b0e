"""The dashboard's history: samples of the read model in a ring buffer of the last hour, and the
points the charts plot, derived from successive samples. Pure: no clock, no I/O.

A :class:`Sample` is what one look at the data directory saw: the spool's gauges and the circuit
(from ``health.read_snapshot``) and the shared counters summed since a fixed origin (cumulative,
so they only grow). Rates and percentiles are differences between two samples: delivered/s is
Δ(delivered + already there) / Δt, the latency p50/p99 are read from the Δ of the delivery-call
histogram (``core.metrics.histogram``, the reader ``metrics`` uses), failures per minute per
error class from Δ ``requests.failed.<class>``. The difference is taken against the oldest
sample at most ``rate_window`` seconds back, so a point is smoothed over a few samples. A
counter that went down (its old buckets were pruned) makes that point unknown (None), never a
negative rate.

Samples refilled from the store's minute buckets (``Counters.by_bucket``) after a restart have
counters but no gauges (``spool_size`` None): the store keeps no past spool depth.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgspec

from pattern_tracker.core import metrics
from pattern_tracker.core.counters import BUCKET_SECONDS

SPAN_SECONDS = 3600.0  # the history covers the last hour
RATE_WINDOW = 10.0  # seconds a rate or a percentile is averaged over
FAILED = "requests.failed."
DELIVERED = ("events.delivered", "events.already_existed")
COUNTER_PREFIXES = ("events.", "requests.", "hist.delivery.")  # what a sample keeps of the counters


class Sample(msgspec.Struct, kw_only=True, frozen=True):
    t: float
    counts: dict[str, int]  # cumulative since the sampler's origin
    spool_size: int | None = None  # None: refilled from minute buckets (no gauge then)
    spool_oldest_age: float | None = None
    circuit: str | None = None


class Point(msgspec.Struct, kw_only=True, frozen=True):
    """One instant of the charts."""

    t: float
    spool_size: int | None
    spool_oldest_age: float | None
    circuit: str | None
    delivered_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    failed_per_min: dict[str, float]  # error class -> failed calls per minute (classes seen so far)


def _delta(new: Mapping[str, int], old: Mapping[str, int]) -> dict[str, int] | None:
    """new - old per counter; None when one went down (pruned buckets: the difference means nothing)."""
    out: dict[str, int] = {}
    for name, n in new.items():
        d = n - old.get(name, 0)
        if d < 0:
            return None
        if d:
            out[name] = d
    if any(name not in new for name in old if old[name]):
        return None
    return out


def derive(sample: Sample, reference: Sample | None) -> Point:
    """The point of ``sample``, its rates taken against ``reference`` (an earlier sample)."""
    rate = p50 = p99 = None
    failed: dict[str, float] = {}
    if reference is not None and sample.t > reference.t:
        d = _delta(sample.counts, reference.counts)
        if d is not None:
            dt = sample.t - reference.t
            rate = round(sum(d.get(name, 0) for name in DELIVERED) / dt, 3)
            hist = metrics.histogram(d, "delivery")
            p50, p99 = hist["p50_ms"], hist["p99_ms"]
            failed = {name.removeprefix(FAILED): round(sample_d * 60.0 / dt, 3)
                      for name, sample_d in d.items() if name.startswith(FAILED)}
            for name in sample.counts:  # a class seen before but quiet now: 0, not missing
                if name.startswith(FAILED):
                    failed.setdefault(name.removeprefix(FAILED), 0.0)
    return Point(t=sample.t, spool_size=sample.spool_size, spool_oldest_age=sample.spool_oldest_age,
                 circuit=sample.circuit, delivered_per_s=rate, p50_ms=p50, p99_ms=p99, failed_per_min=failed)


class History:
    """A ring buffer of the last ``span`` seconds of samples and their points, oldest first.

    ``add`` takes samples in time order (an older or equal time is ignored: a clock step back
    must not fold the chart), derives the sample's point and forgets what is older than
    ``span`` before the newest sample.
    """

    def __init__(self, span: float = SPAN_SECONDS, rate_window: float = RATE_WINDOW) -> None:
        self.span = float(span)
        self.rate_window = float(rate_window)
        self._samples: deque[Sample] = deque()
        self._points: deque[Point] = deque()

    def __len__(self) -> int:
        return len(self._points)

    def add(self, sample: Sample) -> Point | None:
        if self._samples and sample.t <= self._samples[-1].t:
            return None
        point = derive(sample, self._reference(sample.t))
        self._samples.append(sample)
        self._points.append(point)
        horizon = sample.t - self.span
        while self._samples and self._samples[0].t < horizon:
            self._samples.popleft()
            self._points.popleft()
        return point

    def extend(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self.add(sample)

    def _reference(self, t: float) -> Sample | None:
        """The oldest sample within ``rate_window`` before ``t``, else the latest one before it."""
        if not self._samples:
            return None
        found = self._samples[-1]
        for s in reversed(self._samples):
            if s.t < t - self.rate_window:
                break
            found = s
        return found

    def latest(self) -> Point | None:
        return self._points[-1] if self._points else None

    def points(self, since: float | None = None) -> list[Point]:
        """The points after ``since`` (every point when None), oldest first."""
        if since is None:
            return list(self._points)
        return list(_after(self._points, since))


def _after(points: deque[Point], since: float) -> Iterator[Point]:
    # Newest last: walk back to the first point after ``since``, then forward.
    i = len(points)
    while i > 0 and points[i - 1].t > since:
        i -= 1
    for k in range(i, len(points)):
        yield points[k]


def columns(points: list[Point]) -> dict[str, Any]:
    """Points as the columns a chart plots (uPlot's data layout): one list per series, aligned
    on ``t``; ``failed_per_min`` one list per error class (None where a point lacks it)."""
    classes = sorted({cls for p in points for cls in p.failed_per_min})
    return {
        "t": [p.t for p in points],
        "spool_size": [p.spool_size for p in points],
        "spool_oldest_age": [None if p.spool_oldest_age is None else round(p.spool_oldest_age, 1) for p in points],
        "circuit": [p.circuit for p in points],
        "delivered_per_s": [p.delivered_per_s for p in points],
        "p50_ms": [p.p50_ms for p in points],
        "p99_ms": [p.p99_ms for p in points],
        "failed_per_min": {cls: [p.failed_per_min.get(cls) for p in points] for cls in classes},
    }


def refill(per_bucket: Mapping[int, Mapping[str, int]], origin: float, until: float) -> list[Sample]:
    """Cumulative samples at each minute boundary in (origin, until] from the store's minute
    buckets (``Counters.by_bucket(origin)``): the sample at boundary b sums the buckets in
    [origin, b). What the counters' history looks like at minute resolution, without gauges."""
    total: dict[str, int] = {}
    out: list[Sample] = []
    boundary = int(origin) // BUCKET_SECONDS * BUCKET_SECONDS
    while boundary + BUCKET_SECONDS <= until:
        for name, n in per_bucket.get(boundary, {}).items():
            total[name] = total.get(name, 0) + n
        boundary += BUCKET_SECONDS
        out.append(Sample(t=float(boundary), counts=dict(total)))
    return out
