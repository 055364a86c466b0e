"""``serve --chaos SCHEDULE``: faults injected on a schedule (docs/chaos.md).

Three layers, each usable alone:

* **The schedule** (:mod:`.chaos_schedule`) — :class:`Schedule` (msgspec Structs, strict: unknown keys, probabilities
  outside 0..1 and durations ≤ 0 are refused) loaded by :func:`load_schedule`, whose errors are
  one :class:`ChaosScheduleError` line naming the file, the line and the key path, in the style
  of :mod:`pattern_tracker.settings.config` (the CLI exits 2).
* **The policy** (:mod:`.chaos_policy`) — :func:`locate` and :func:`decide`: plain code taking ``(schedule, elapsed
  seconds, rng)``; no clock, no I/O. Every call draws exactly three numbers from ``rng``, so with
  a seed the same sequence of requests gets the same decisions whatever they were.
* **The server side** (this module) — :class:`Chaos`: an aiohttp middleware applying the decisions to the
  ``/api/pattern-traceability/lineage*`` routes, the health override (``degraded`` /
  ``database_unavailable`` during error and outage phases) and the phase controller, which logs
  each phase change and, for ``outage: refused``, closes the listening socket through a
  :class:`SiteListener` and opens it again on the same port when the phase ends.

Per request, at most one of ``errors`` / ``rate_limit`` / ``reset`` / ``garbage`` happens (their
probabilities are slots of one draw and must add up to ≤ 1); ``latency`` (before answering) and
``slow_body`` (only for an answer that is otherwise untouched) are drawn independently.
``errors`` and ``rate_limit`` answer before the request is processed (nothing is stored);
``reset`` and ``garbage`` happen *after* it was processed (the event is stored, the client does
not learn it: its retry must meet ``already_exists``); a ``hang`` holds the request until its
phase ends and then processes it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate

import msgspec
from aiohttp import web

from pattern_tracker.model.api import PREFIX
from pattern_tracker.service.chaos_policy import Decision, Position, decide, describe_faults, locate
from pattern_tracker.service.chaos_schedule import (
    ChaosScheduleError,
    Faults,
    Phase,
    Schedule,
    load_schedule,
    parse_schedule,
)
from pattern_tracker.service.listener import SiteListener

__all__ = [
    "Chaos",
    "ChaosScheduleError",
    "Decision",
    "Faults",
    "Phase",
    "Position",
    "Schedule",
    "SiteListener",
    "decide",
    "describe_faults",
    "load_schedule",
    "locate",
    "parse_schedule",
]

log = logging.getLogger("pattern_tracker.service.chaos")

LINEAGE_PREFIX = PREFIX + "/lineage"


# -- the server side ------------------------------------------------------------------------------

_PROXY_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
              b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
_NOT_JSON = b"<!DOCTYPE html><html><body><h1>Service starting</h1><p>Please try again.</p></body></html>\n"
_encode = msgspec.json.Encoder().encode


def error_response(status: int, request: web.Request) -> web.Response:
    """The service's own body for ``status`` on this route (502 is a reverse proxy's page)."""
    if status == 502:
        return web.Response(body=_PROXY_502, status=502, content_type="text/html")
    path = request.path
    batch = path.endswith("/track/batch")
    track = path.endswith("/track")
    if status == 503:
        detail = "Database connection not available"
    elif status == 504:
        detail = ("Batch tracking operation timed out" if batch else "Tracking operation timed out" if track
                  else "Query operation timed out")
    else:
        what = "Batch lineage tracking failed" if batch else "Lineage tracking failed" if track \
            else "Lineage query failed"
        detail = f"{what}: injected fault (chaos schedule)"
    return web.Response(body=_encode({"detail": detail}), status=status, content_type="application/json")


def _copy_head(resp: web.StreamResponse, length: int) -> web.StreamResponse:
    out = web.StreamResponse(status=resp.status, reason=resp.reason)
    for key, value in resp.headers.items():
        if key.lower() not in ("content-length", "transfer-encoding"):
            out.headers[key] = value
    out.content_length = length
    return out


class Chaos:
    """The schedule applied to a running app: build_app(chaos=...) installs :attr:`middleware`,
    starts the controller with the app and stops it on shutdown; run_server attaches a
    :class:`SiteListener` for refused outages. ``clock`` is monotonic seconds (tests may replace it)."""

    def __init__(self, schedule: Schedule, *, seed: int | None = None, source: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.schedule = schedule
        self.seed_given = seed is not None or schedule.seed is not None
        self.seed: int = seed if seed is not None else schedule.seed if schedule.seed is not None \
            else random.SystemRandom().randrange(2**32)
        self.source = source
        self.rng = random.Random(self.seed)
        self.clock = clock
        self.counts: collections.Counter[str] = collections.Counter()
        self._t0: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._listener: SiteListener | None = None
        self._down = False  # a refused phase is in force
        self._warned_no_listener = False
        self.middleware = self._make_middleware()

    # -- time and policy

    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else self.clock() - self._t0

    def position(self) -> Position | None:
        return locate(self.schedule, self.elapsed())

    def decide(self) -> Decision:
        return decide(self.schedule, self.elapsed(), self.rng)

    def degraded(self) -> bool:
        """True while the health endpoints should report ``database_unavailable``."""
        pos = self.position() if self._t0 is not None else None
        return pos is not None and pos.phase.degraded

    # -- lifecycle

    async def start(self) -> None:
        if self._t0 is not None:
            return
        self._closing = asyncio.Event()
        self._t0 = self.clock()
        sched = self.schedule
        how = "given" if self.seed_given else f"random; --seed {self.seed} replays it"
        log.info("chaos: schedule %s: %d phase(s), %gs%s; seed %d (%s)", self.source or "(in memory)",
                 len(sched.phases), sched.total, ", repeating" if sched.repeat else "", self.seed, how)
        self._task = asyncio.create_task(self._run(), name="chaos-controller")

    async def attach_listener(self, listener: SiteListener) -> None:
        """Give the controller control of the listening socket (applies a refused phase in force)."""
        self._listener = listener
        if self._down:
            await listener.pause()

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()  # held (hung) requests are dropped
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self.counts:
            log.info("chaos: lineage requests answered: %s",
                     ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))

    async def _run(self) -> None:
        current: tuple[int, int] | None | bool = False  # False = nothing entered yet
        while True:
            pos = self.position()
            key = None if pos is None else (pos.index, pos.cycle)
            if key != current:
                current = key
                await self._enter(pos)
            if pos is None:
                return
            await asyncio.sleep(max(0.001, pos.end - self.elapsed()))

    async def _enter(self, pos: Position | None) -> None:
        if pos is None:
            log.info("chaos: schedule finished after %gs: no more faults", self.schedule.total)
        else:
            log.info("chaos: phase %r (%gs): %s", pos.phase.name, pos.phase.duration, describe_faults(pos.phase))
        want_down = pos is not None and pos.phase.faults.outage == "refused"
        if want_down == self._down:
            return
        self._down = want_down
        listener = self._listener
        if listener is None:  # not (yet) attached: attach_listener applies the state
            return
        try:
            await (listener.pause() if want_down else listener.resume())
        except Exception as exc:  # noqa: BLE001 - the controller must keep going
            log.error("chaos: %s the listener failed: %s: %s", "closing" if want_down else "reopening",
                      type(exc).__name__, exc)

    # -- the middleware

    def _make_middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def chaos_middleware(request: web.Request,
                                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
            if not request.path.startswith(LINEAGE_PREFIX):
                return await handler(request)
            return await self._apply(request, handler)

        return chaos_middleware

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds``; False when the server is closing meanwhile."""
        if seconds <= 0:
            return True
        closing = self._closing
        if closing is None:
            await asyncio.sleep(seconds)
            return True
        try:
            await asyncio.wait_for(closing.wait(), seconds)
        except (TimeoutError, asyncio.TimeoutError):
            return True
        return False

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=503)  # never reaches the client

    async def _apply(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        d = self.decide()
        self.counts[f"http_{d.status}" if d.status else d.action] += 1
        if d.action == "refused":  # a connection the listener could not close (or no listener)
            if self._listener is None and not self._warned_no_listener:
                self._warned_no_listener = True
                log.warning("chaos: no control of the listening socket (app not started by run_server): "
                            "a refused outage drops each request's connection instead")
            return self._drop(request)
        if d.action == "hang":
            if not await self._wait((d.phase_end or 0.0) - self.elapsed()):
                return self._drop(request)
            return await handler(request)
        if d.latency and not await self._wait(d.latency):
            return self._drop(request)
        if d.action == "error":
            assert d.status is not None
            return error_response(d.status, request)
        if d.action == "rate_limit":
            seconds = d.retry_after or 0
            value = formatdate(math.ceil(time.time()) + seconds, usegmt=True) if d.retry_after_date else str(seconds)
            return web.Response(body=_encode({"detail": "Rate limit exceeded"}), status=429,
                                content_type="application/json", headers={"Retry-After": value})
        resp = await handler(request)
        body = resp.body if isinstance(resp, web.Response) else None
        if not isinstance(body, bytes):
            return resp  # nothing we can cut or dribble
        if d.action == "reset":
            return await self._reset(request, resp, body)
        if d.action == "garbage":
            mangled = body[: max(1, len(body) // 2)] if d.garbage == "truncated" else _NOT_JSON
            return web.Response(body=mangled, status=200, content_type="application/json")
        if d.slow_bps:
            return await self._dribble(request, resp, body, d.slow_bps)
        return resp

    async def _reset(self, request: web.Request, resp: web.Response, body: bytes) -> web.StreamResponse:
        """Status line, headers (with the full Content-Length) and half the body; then the
        connection is aborted."""
        out = _copy_head(resp, len(body))
        try:
            await out.prepare(request)
            await out.write(body[: len(body) // 2])
        except (ConnectionError, RuntimeError):
            pass
        transport = request.transport
        if transport is not None:
            transport.abort()
        return out

    async def _dribble(self, request: web.Request, resp: web.Response, body: bytes, bps: int) -> web.StreamResponse:
        out = _copy_head(resp, len(body))
        step = max(1, int(bps * 0.05))  # about 20 writes a second
        try:
            await out.prepare(request)
            for i in range(0, len(body), step):
                part = body[i:i + step]
                await out.write(part)
                if i + step < len(body) and not await self._wait(len(part) / bps):
                    self._drop(request)
                    return out
            await out.write_eof()
        except (ConnectionError, RuntimeError):  # the client gave up
            transport = request.transport
            if transport is not None:
                transport.abort()
        return out
