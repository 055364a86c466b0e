"""The names and shapes of the cross-process metrics kept in the store (see pipeline/core/counters.py).

Hook processes and drainers are short-lived, so what ``metrics`` and ``health`` report is added
to per-minute counters in the store by every process, in the transactions it makes anyway:

* ``requests.total``, ``requests.succeeded``, ``requests.failed.<error_class>`` — delivery calls;
* ``events.delivered``, ``events.already_existed``, ``events.dead_lettered`` — final outcomes;
* ``retry.successful_without_retry|successful_with_retry|failed_without_retry|failed_with_retry``
  (per event) and ``retry.attempts`` (events sent again);
* latency histograms ``hist.<name>.le_<ms>`` / ``hist.<name>.count`` / ``hist.<name>.sum_ms`` for
  ``delivery`` (one call) and ``e2e`` (occurred_at → acknowledged), plus ``hist.<name>.sum_us`` /
  ``hist.<name>.count_us`` so that the mean of sub-millisecond calls is not rounded to 0;
* ``spool.*``, ``dead_letter.*``, ``redaction.*``, ``hook.*`` (docs/telemetry.md).

Standard library only. Percentiles are read from the buckets (the upper bound of the bucket
holding the quantile), so they are as precise as the bucket layout.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

BUCKETS_MS: tuple[float, ...] = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
                                 3600000, math.inf)
LAST_DELIVERY_KEY = b"last_delivery_at"


def _bucket_label(bound: float) -> str:
    return "inf" if bound == math.inf else f"{bound:g}"


def observe(counts: dict[str, int], name: str, seconds: Iterable[float]) -> None:
    """Add observations (seconds) to histogram ``name`` in ``counts`` (cumulative per bucket label)."""
    for s in seconds:
        ms = max(0.0, s * 1000.0)
        for bound in BUCKETS_MS:
            if ms <= bound:
                key = f"hist.{name}.le_{_bucket_label(bound)}"
                counts[key] = counts.get(key, 0) + 1
                break
        counts[f"hist.{name}.count"] = counts.get(f"hist.{name}.count", 0) + 1
        counts[f"hist.{name}.sum_ms"] = counts.get(f"hist.{name}.sum_ms", 0) + int(round(ms))
        counts[f"hist.{name}.sum_us"] = counts.get(f"hist.{name}.sum_us", 0) + int(round(ms * 1000.0))
        counts[f"hist.{name}.count_us"] = counts.get(f"hist.{name}.count_us", 0) + 1


def bump(counts: dict[str, int], name: str, n: int = 1) -> None:
    if n:
        counts[name] = counts.get(name, 0) + n


def histogram(totals: Mapping[str, int], name: str) -> dict[str, float | None]:
    """count, mean and p50/p95/p99 (ms) of histogram ``name`` from summed counters."""
    count = totals.get(f"hist.{name}.count", 0)
    if not count:
        return {"count": 0, "mean_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    per_bucket = [(bound, totals.get(f"hist.{name}.le_{_bucket_label(bound)}", 0)) for bound in BUCKETS_MS]

    def quantile(q: float) -> float | None:
        rank = q * count
        seen = 0
        for bound, n in per_bucket:
            seen += n
            if seen >= rank and n:
                return None if bound == math.inf else bound
        return None

    # The µs sum covers every call only if all of them recorded it (counters written before it existed).
    if totals.get(f"hist.{name}.count_us", 0) == count:
        mean_ms = totals.get(f"hist.{name}.sum_us", 0) / 1000.0 / count
    else:
        mean_ms = totals.get(f"hist.{name}.sum_ms", 0) / count
    return {
        "count": count,
        "mean_ms": mean_ms,
        "p50_ms": quantile(0.50),
        "p95_ms": quantile(0.95),
        "p99_ms": quantile(0.99),
    }
