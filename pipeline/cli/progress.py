"""A small progress bar for long operator commands (``drain``, later ``replay``).

On a terminal (the stream is a tty) it redraws one line in place, a few times a second::

    drain [##########----------]  120/240  50%  85.3 ev/s  ETA 1s

Anywhere else (a pipe, a file, a CI log) it prints nothing while running: the command's own
summary line is what a script reads. ``finish(line)`` ends it: on a tty the last bar stays on
screen (followed by a newline); then ``line``, if given, is written once in either case.

Standard library only. ``done`` is whatever the caller counts (for drain: delivered + already
there + dead-lettered); ``total`` may grow while running (new events arrive) and is never shown
below ``done``. The rate is measured over the last few seconds, so the ETA follows a stall or a
recovery quickly instead of averaging over the whole run.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import deque

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

RATE_WINDOW = 5.0  # seconds of samples the rate is measured over


def clear_before_logs(clear: Callable[[], None], stream: TextIO) -> Callable[[], None]:
    """Make our log records bound for ``stream`` call ``clear()`` first; returns the undo.

    A line redrawn in place has no newline: a log record written meanwhile would be glued to
    its end. (The handler is shared with the third-party loggers: one filter covers them.)
    """
    import logging

    handlers = [h for h in logging.getLogger("pattern_tracker").handlers
                if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stream]

    def before(record: logging.LogRecord) -> bool:
        clear()
        return True

    for h in handlers:
        h.addFilter(before)

    def undo() -> None:
        for h in handlers:
            h.removeFilter(before)

    return undo


def _eta(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """done/total, rate and ETA on one terminal line; silent when the stream is not a tty."""

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 24,
        unit: str = "ev",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = enabled
        self.total = max(0, int(total))
        self.done = 0
        self.label = label
        self.width = width
        self.unit = unit
        self.clock = clock
        self.started = clock()
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])
        self._shown = 0  # characters of the line on screen
        self._finished = False
        self._lock = threading.Lock()  # log records (which clear the line) come from other threads too
        self._undo_logs = clear_before_logs(self._clear, self.stream) if enabled else None

    # -- numbers -------------------------------------------------------------------------------

    def update(self, done: int, total: int | None = None) -> None:
        """Record progress (and redraw on a tty)."""
        self.done = max(0, int(done))
        if total is not None:
            self.total = max(0, int(total))
        self.total = max(self.total, self.done)
        now = self.clock()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        self.draw()

    @property
    def rate(self) -> float:
        """Units per second over the last RATE_WINDOW seconds (over the whole run before that)."""
        t0, d0 = self._samples[0]
        t1, d1 = self._samples[-1]
        if t1 - t0 < 0.2:
            elapsed = self.clock() - self.started
            return self.done / elapsed if elapsed > 0 else 0.0
        return max(0.0, (d1 - d0) / (t1 - t0))

    @property
    def eta(self) -> float | None:
        left = self.total - self.done
        if left <= 0:
            return 0.0
        rate = self.rate
        return left / rate if rate > 0 else None

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    # -- drawing -------------------------------------------------------------------------------

    def render(self) -> str:
        total = self.total
        frac = self.done / total if total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        digits = len(str(total))
        eta = self.eta
        eta_text = "ETA ?" if eta is None else ("done" if self.done >= total else f"ETA {_eta(eta)}")
        head = f"{self.label} " if self.label else ""
        return (f"{head}[{bar}] {self.done:>{digits}}/{total} {frac:4.0%}  "
                f"{self.rate:.1f} {self.unit}/s  {eta_text}")

    def draw(self) -> None:
        if not self.enabled or self._finished:
            return
        text = self.render()
        with self._lock:
            pad = max(0, self._shown - len(text))
            try:
                self.stream.write("\r" + text + " " * pad)
                self.stream.flush()
            except (OSError, ValueError):
                self.enabled = False  # the terminal went away: stay quiet
                return
            self._shown = len(text)

    def _clear(self) -> None:
        """Blank the bar (a log line follows); the next update draws it again."""
        with self._lock:
            if self._shown and not self._finished:
                try:
                    self.stream.write("\r" + " " * self._shown + "\r")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
                self._shown = 0

    def finish(self, line: str | None = None) -> None:
        """Leave the final bar on screen (tty), then write ``line`` if given. Idempotent."""
        if self._undo_logs is not None:
            self._undo_logs()
            self._undo_logs = None
        if self._finished:
            return
        if self.enabled:
            self.draw()
            self._finished = True
            self._write("\n")
        self._finished = True
        if line:
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    # -- driving it ----------------------------------------------------------------------------

    async def follow(self, count: Callable[[], int], stop: asyncio.Event, interval: float = 0.2) -> None:
        """Poll ``count()`` every ``interval`` seconds (~5×/s) until ``stop``; a last update then.

        Does nothing (not even polling) when the bar is disabled.
        """
        if not self.enabled:
            return
        self.update(count())
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
            self.update(count())
