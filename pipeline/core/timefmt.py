"""Times as people read them: ISO 8601 UTC, short durations, "in 48s" / "12s ago". Plain code."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    if ts is None or ts <= 0:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):  # past the year 9999 (stored before times were checked)
        return f"{ts:g} (not a date)"


def duration(seconds: float) -> str:
    s = int(round(abs(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(ts: float | None, now: float) -> str:
    """``2026-01-02T03:04:05Z (12s ago)`` / ``(in 48s)``; ``-`` for no time."""
    stamp = iso(ts)
    if stamp is None or ts is None:
        return "-"
    delta = ts - now
    return f"{stamp} ({'in ' + duration(delta) if delta > 0.5 else duration(delta) + ' ago'})"
