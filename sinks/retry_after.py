"""Parse an HTTP ``Retry-After`` header value into seconds to wait. Pure code, no I/O.

RFC 9110 §10.2.3 allows two forms::

    Retry-After: 120                              (delay-seconds)
    Retry-After: Fri, 31 Dec 1999 23:59:59 GMT    (HTTP-date; obsolete RFC 850 / asctime forms too)

Examples:
    >>> parse_retry_after("2")
    2.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0)
    6.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=50.0)  # in the past
    0.0
    >>> parse_retry_after("soon") is None
    True
"""

from __future__ import annotations

import math
import re
import time
from datetime import timezone
from email.utils import parsedate_to_datetime

__all__ = ["MAX_RETRY_AFTER", "parse_retry_after"]

# One day: a service asking for more is treated as asking for a day (the caller's own
# backoff cap usually applies long before this).
MAX_RETRY_AFTER = 86_400.0

# delay-seconds is 1*DIGIT; we also tolerate a fraction and a sign (negative clamps to 0).
_SECONDS = re.compile(r"[+-]?\d+(?:\.\d+)?")


def parse_retry_after(
    value: str | bytes | None,
    *,
    now: float | None = None,
    maximum: float | None = MAX_RETRY_AFTER,
) -> float | None:
    """Return the seconds to wait, clamped to ``[0, maximum]``, or None when absent or unparseable.

    Args:
        value: the raw header value (``None`` when the header is missing).
        now: the current time as a Unix timestamp, for HTTP dates (default ``time.time()``).
        maximum: upper clamp; ``None`` disables it (an infinite value then yields ``None``).

    Returns:
        Seconds as a float: ``0.0`` for dates in the past, ``None`` for garbage.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value.strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        seconds = _parse_http_date(text, time.time() if now is None else now)
        if seconds is None:
            return None
    if math.isnan(seconds):
        return None
    seconds = max(0.0, seconds)
    if maximum is not None:
        seconds = min(seconds, maximum)
    return seconds if math.isfinite(seconds) else None


def _parse_http_date(text: str, now: float) -> float | None:
    # An HTTP date always names a weekday or month; refuse bare numbers-with-junk early.
    if not any(c.isalpha() for c in text):
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are always GMT
        when = when.replace(tzinfo=timezone.utc)
    try:
        return when.timestamp() - now
    except (OverflowError, ValueError, OSError):
        return None
