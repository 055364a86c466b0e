"""One rule for a number that comes in from outside: finite, and within its bounds.

Every door uses it — a CLI flag (``cli.support.bounded``), an argument of the Python API (the
facade, ``sources.replay``), the time of a change (``core.capture``) — so each says the same thing
the same way. Why a function rather than ``if x <= 0: raise``: nan passes every such refusal
(every comparison with it is false) and inf passes every lower bound; a queued nan time could not
be decoded again and was quarantined, a nan ``--speedup`` paced nothing. Standard library only.
"""

from __future__ import annotations

import math

__all__ = ["MAX_REPLAY_RATE", "bounded_number"]

# A replay's --rate / rate= beyond any pipeline's reach (events per second); the pacing's
# arithmetic (rate x elapsed seconds) overflows a float for rates near its largest.
MAX_REPLAY_RATE = 1e9


def _wanted(low: float, high: float = math.inf, *, above: bool = False, integer: bool = False) -> str:
    """What is allowed, in words: ``a finite number greater than 0 and at most 1e+09``."""
    text = ("" if integer else "a finite number ") + (f"greater than {low:g}" if above else f"at least {low:g}")
    return text + (f" and at most {high:g}" if high != math.inf else "")


def bounded_number(value: object, low: float, high: float = math.inf, *, above: bool = False,
                   integer: bool = False, name: str = "") -> float:
    """``value`` when it is a finite number (an int when ``integer``; never a bool) of at least
    ``low`` (greater than it when ``above``) and at most ``high``. Otherwise TypeError (not a
    number) or ValueError, one line: ``NAME must be a finite number greater than 0, got nan``."""
    prefix = f"{name} " if name else ""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise TypeError(f"{prefix}must be {'an integer' if integer else 'a number'}, got {type(value).__name__}")
    try:
        finite = integer or math.isfinite(value)  # (for an int: as a float, which the caller will make of it)
    except OverflowError:  # an int too large for a float
        finite = False
    if not (finite and (value > low if above else value >= low) and value <= high):
        shown = str(value)
        shown = shown if len(shown) <= 24 else shown[:20] + "…"
        raise ValueError(f"{prefix}must be {_wanted(low, high, above=above, integer=integer)}, got {shown}")
    return value
