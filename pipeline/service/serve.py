"""``serve``: the Phase 4 Pattern Traceability API (shared/PHASE4_API.md) over the embedded store.

Status codes and bodies mirror the real service so either side can be swapped for the other:
200 success bodies with ``data`` + ``metadata``; 422 pydantic-like ``detail`` lists; 400
``{"detail": ...}`` for static rule violations (a batch is refused as a whole) and, like the
service, ``{"success": false, "error": "Validation error: ..."}`` (plus ``detail``) for rules that
depend on stored state (e.g. a missing parent); 404 for an unknown pattern's lineage; 429 with
Retry-After; 413 for oversize bodies; 401 when a token is configured and not presented.

LMDB work runs on one worker thread (``loop.run_in_executor``); batch requests that wait for it
share one write transaction (``_BatchWriter``). Request bodies (code) and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import hmac
import logging
import math
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, NamedTuple, Protocol

import lmdb
import msgspec
from aiohttp import web

from pattern_tracker.model.api import PREFIX
from pattern_tracker import __version__
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.core.store import StoreError
from pattern_tracker.sinks.lineage_store import LineageStore, LineageValidationError, PatternNotFound, operation_for, random_uuids


__all__ = ["build_app", "run_server", "ListenError", "PREFIX", "FaultHook", "DEFAULT_MAX_REQUEST_BYTES"]

log = logging.getLogger("pattern_tracker.service.serve")

DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
FaultHook = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
Middleware = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[web.StreamResponse]]

_TRACK_TIMEOUT = 30.0
_ORDER_WAIT = 0.5  # seconds a transaction may wait for a batch request that arrived before its own


class _BatchIn(msgspec.Struct, kw_only=True):
    """The service's batch body: processing_mode is free text (unknown values fall back)."""

    events: list[TrackRequest]
    batch_id: str | None = None
    processing_mode: str = "parallel"
    sequential_processing: bool = False
    timeout_per_event: float = 10.0


TrackResult = dict[str, Any] | LineageValidationError


class SiteListener:
    """Closes and reopens the listening socket of ``runner`` (``outage: refused``). Closing also
    drops the open connections (idle keep-alive ones and requests in progress), as when the
    service goes away. ``port`` is the bound port, so a server started on port 0 comes back on
    the same port."""

    def __init__(self, runner: web.BaseRunner, site: web.TCPSite | None, host: str, port: int) -> None:
        self.runner = runner
        self.site = site
        self.host = host
        self.port = port

    @property
    def listening(self) -> bool:
        return self.site is not None

    async def pause(self) -> None:
        site, self.site = self.site, None
        if site is not None:
            await site.stop()
        server = self.runner.server
        for conn in server.connections if server is not None else ():
            conn.force_close()  # the service is gone: its open connections (keep-alive ones too) with it

    async def resume(self) -> None:
        attempt = 0
        while self.site is None:
            site = web.TCPSite(self.runner, self.host, self.port)
            try:
                await site.start()
            except OSError as exc:
                attempt += 1
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("chaos: cannot listen on %s:%s again yet (%s); retrying", self.host, self.port, exc)
                await asyncio.sleep(0.25)
                continue
            self.site = site


class FaultInjector(Protocol):
    """What serve needs of a fault schedule (``service.chaos.Chaos``): serve never imports chaos,
    chaos builds on serve."""

    middleware: Any

    def degraded(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def attach_listener(self, listener: SiteListener) -> None: ...


class _State:
    def __init__(self, lineage: LineageStore, token: str | None, max_request_bytes: int, rate_limit: int,
                 fault_hook: FaultHook | None, chaos: FaultInjector | None = None) -> None:
        self.lineage = lineage
        self.token = token.encode() if token else None
        self.max_request_bytes = max_request_bytes
        self.rate_limit = rate_limit
        self.fault_hook = fault_hook
        self.chaos = chaos
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lineage-store")
        self.batches = _BatchWriter(self)
        self.started = time.monotonic()
        self.window: collections.deque[float] = collections.deque()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


class _Job(NamedTuple):
    """One batch request waiting for the store."""

    arrived: float  # perf_counter when its handler started (headers read; the body may still be uploading)
    events: Sequence[TrackRequest]
    done: asyncio.Future[tuple[list[TrackResult], float]]


class _BatchWriter:
    """Runs the batches that wait for the lineage store together, in ONE write transaction.

    Why: a commit writes every B-tree page it touched and syncs the file, whatever the number of
    events; batches that arrive while a commit runs share the next one (fewer page writes and
    syncs) instead of queueing one transaction each. Each batch gets the results it would get alone
    after the ones before it; a failing transaction fails every batch in it, as it would have
    failed each on its own.

    Batches run in the order their requests arrived, not the order their bodies finished
    uploading: a client with several batches in flight sends a parent's batch before its child's,
    and the child's body can finish first. A transaction starts only once the requests that arrived
    before its batches are read too (waiting at most ``_ORDER_WAIT`` after such a request arrived,
    so a stalled upload holds nobody up for long).
    """

    def __init__(self, st: _State) -> None:
        self._st = st
        self._waiting: list[_Job] = []
        self._drainer: asyncio.Task[None] | None = None
        self._not_executing = asyncio.Event()
        self._not_executing.set()
        self._reading: dict[object, float] = {}  # requests not yet submitted -> when they arrived
        self._read = asyncio.Event()  # set whenever one of them is submitted or answered

    @contextlib.contextmanager
    def reading(self, arrived: float) -> Iterator[None]:
        """Count a batch request (arrived at ``arrived``) as being read until it is submitted or answered."""
        token = object()
        self._reading[token] = arrived
        try:
            yield
        finally:
            del self._reading[token]
            self._read.set()

    def submit(self, events: Sequence[TrackRequest],
               arrived: float) -> asyncio.Future[tuple[list[TrackResult], float]]:
        """A future of the results of ``events`` and the store's time per event (ms) of their transaction."""
        done: asyncio.Future[tuple[list[TrackResult], float]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Job(arrived, events, done))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return done

    async def between_executions(self) -> None:
        """Return once the store thread is committing or idle, not executing events.

        Why: executing events is Python work on the store thread that releases the GIL at every
        LMDB call, while the commit waits on the disk without it. Decoding a 1 MB request body
        holds the GIL for milliseconds; done during an execution it stalls the store thread (the
        bottleneck) at its next LMDB call, done during a commit it costs the store thread nothing.
        """
        await self._not_executing.wait()

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._earlier_requests_read()
                jobs, self._waiting = self._waiting, []
                jobs.sort(key=lambda job: job.arrived)
                await self._commit(jobs)
        finally:
            self._drainer = None

    async def _earlier_requests_read(self) -> None:
        """Wait while a request that arrived before a waiting batch, under ``_ORDER_WAIT`` ago, is being read."""
        while True:
            latest = max(job.arrived for job in self._waiting)
            now = time.perf_counter()
            earlier = [t for t in self._reading.values() if t < latest and now - t < _ORDER_WAIT]
            if not earlier:
                return
            self._read.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._read.wait(), min(earlier) + _ORDER_WAIT - now)

    async def _commit(self, jobs: list[_Job]) -> None:
        events = [ev for job in jobs for ev in job.events]
        executed = functools.partial(asyncio.get_running_loop().call_soon_threadsafe, self._not_executing.set)
        t0 = time.perf_counter()
        self._not_executing.clear()
        try:
            results = await self._st.run(functools.partial(self._st.lineage.track_many, events,
                                                           before_commit=executed))
        except asyncio.CancelledError:  # the loop is shutting down
            for job in jobs:
                job.done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every batch of the transaction
            for job in jobs:
                if not job.done.done():
                    job.done.set_exception(exc)
            return
        finally:
            self._not_executing.set()
        _hand_out(jobs, results, round((time.perf_counter() - t0) * 1000 / len(events), 2))


def _hand_out(jobs: list[_Job], results: list[TrackResult], per_event: float) -> None:
    """Give each batch of a transaction its slice of the results."""
    offset = 0
    for job in jobs:
        if not job.done.done():  # its request may have timed out meanwhile
            job.done.set_result((results[offset:offset + len(job.events)], per_event))
        offset += len(job.events)


class ListenError(OSError):
    """The listening socket could not be opened: a user's to fix (another port or host), not a crash.

    ``str()`` is one line naming the address, e.g. ``cannot listen on 127.0.0.1:8053: the port is
    already in use``; ``port_problem`` says whether another port (rather than another host) helps.
    """

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        if exc.errno == errno.EADDRINUSE:
            why, self.port_problem = "the port is already in use", True
        elif exc.errno == errno.EACCES:
            why, self.port_problem = "permission denied (ports below 1024 need privileges)", True
        elif isinstance(exc, socket.gaierror):
            why, self.port_problem = "the host name does not resolve", False
        elif exc.errno == errno.EADDRNOTAVAIL:
            why, self.port_problem = "the address is not one of this machine's", False
        else:
            why, self.port_problem = (exc.strerror or str(exc)).lower(), False
        shown = f"[{host}]" if ":" in host else host
        super().__init__(exc.errno, f"cannot listen on {shown}:{port}: {why}")
        self.host, self.port = host, port

    def __str__(self) -> str:
        return str(self.strerror)


STATE: web.AppKey[_State] = web.AppKey("pattern_tracker_serve_state", _State)

_json_encode = msgspec.json.Encoder().encode


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_json_encode(body), status=status, content_type="application/json", headers=headers)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


# -- 422: msgspec errors in the shape of pydantic/FastAPI ----------------------------------------

_PATH_RE = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_EXPECTED_RE = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`")
_MISSING_RE = re.compile(r"^Object missing required field `([^`]+)`")
_BYTE_RE = re.compile(r"\(byte (\d+)\)")
_TYPE_NAMES = {
    "str": ("string_type", "Input should be a valid string"),
    "int": ("int_type", "Input should be a valid integer"),
    "float": ("float_type", "Input should be a valid number"),
    "bool": ("bool_type", "Input should be a valid boolean"),
    "array": ("list_type", "Input should be a valid list"),
    "object": ("dict_type", "Input should be a valid dictionary"),
}


def _walk(doc: Any, loc: list[str | int]) -> Any:
    for part in loc:
        try:
            doc = doc[part]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _decode_error_detail(body: bytes, exc: msgspec.DecodeError) -> list[dict[str, Any]]:
    """Translate a msgspec error (path ``$.events[3].pattern_id``) into FastAPI's 422 detail list."""
    msg = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        m = _BYTE_RE.search(msg)
        pos = int(m.group(1)) if m else (len(body) if "truncated" in msg else 0)
        return [{"type": "json_invalid", "loc": ["body", pos], "msg": "JSON decode error",
                 "input": {}, "ctx": {"error": msg}}]
    text, _, path = msg.partition(" - at `")
    loc: list[str | int] = []
    for name, index in _PATH_RE.findall(path.rstrip("`").removeprefix("$")):
        loc.append(int(index) if index else name)
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        doc = None
    m = _MISSING_RE.match(text)
    if m:
        return [{"type": "missing", "loc": ["body", *loc, m.group(1)], "msg": "Field required", "input": _walk(doc, loc)}]
    value = _walk(doc, loc)
    m = _EXPECTED_RE.match(text)
    if m:
        expected = m.group(1).split(" | ")[0]
        if expected == "object" and (not loc or isinstance(loc[-1], int)):  # a model, not a dict field
            kind, text_msg = "model_attributes_type", "Input should be a valid dictionary or object to extract fields from"
        else:
            kind, text_msg = _TYPE_NAMES.get(expected, ("value_error", text))
        return [{"type": kind, "loc": ["body", *loc], "msg": text_msg, "input": value}]
    return [{"type": "value_error", "loc": ["body", *loc], "msg": text, "input": value}]


def _unprocessable(detail: list[dict[str, Any]]) -> web.Response:
    return _json({"detail": detail}, status=422)


async def _read_body(request: web.Request, st: _State) -> bytes | web.Response:
    too_large = _json({"detail": f"Request body exceeds {st.max_request_bytes} bytes"}, status=413)
    if request.content_length is not None and request.content_length > st.max_request_bytes:
        return too_large
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return too_large
    if len(body) > st.max_request_bytes:
        return too_large
    return body


def _decode(body: bytes, typ: type) -> Any:
    if not body.strip():
        return _unprocessable([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    try:
        return msgspec.json.decode(body, type=typ)
    except msgspec.DecodeError as exc:
        return _unprocessable(_decode_error_detail(body, exc))


def _meta(operation: str, pattern_id: str, duration_ms: float, **extra: Any) -> dict[str, Any]:
    return {"correlation_id": str(uuid.uuid4()), "operation": operation, "duration_ms": duration_ms,
            "pattern_id": pattern_id, **extra}


def _store_failure(exc: Exception) -> web.Response:
    if isinstance(exc, (StoreError, lmdb.Error)):
        log.error("lineage store unavailable: %s", exc)
        return _json({"detail": "Database connection not available"}, status=503)
    log.exception("lineage tracking failed")
    return _json({"detail": f"Lineage tracking failed: {exc}"}, status=500)


# -- handlers ---------------------------------------------------------------------------------------


async def _parse(request: web.Request, st: Any, type_: Any) -> Any:
    """The request body decoded as ``type_``, or the error response (413 / 422) to send."""
    body = await _read_body(request, st)
    if isinstance(body, web.Response):
        return body
    return _decode(body, type_)


async def track(request: web.Request) -> web.Response:
    st = request.app[STATE]
    start = time.perf_counter()
    req = await _parse(request, st, TrackRequest)
    if isinstance(req, web.Response):
        return req
    operation = operation_for(req.event_type)
    try:
        t0 = time.perf_counter()
        data = await asyncio.wait_for(st.run(st.lineage.track, req), _TRACK_TIMEOUT)
        duration = _ms(t0)
    except LineageValidationError as exc:
        if exc.kind == "static":
            return _json({"detail": exc.detail}, status=400)
        return _json({"success": False, "error": exc.detail, "detail": exc.detail,
                      "metadata": {"correlation_id": str(uuid.uuid4()), "operation": operation,
                                   "duration_ms": _ms(start), "error_type": "validation_error"},
                      "processing_time_ms": _ms(start)}, status=400)
    except (TimeoutError, asyncio.TimeoutError):
        return _json({"detail": "Tracking operation timed out"}, status=504)
    except Exception as exc:  # noqa: BLE001 - mirrored as the service's 500/503
        return _store_failure(exc)
    return _json({"success": True, "data": data,
                  "metadata": _meta(operation, req.pattern_id, duration, processing_time_ms=_ms(start))})


def _batch_results(events: Sequence[TrackRequest], results: Sequence[TrackResult],
                   per_event: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(successful_results, failed_results, handled duplicates) of a batch response."""
    successes: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    duplicates = 0
    ids = random_uuids(len(events))
    for i, ev in enumerate(events):
        res = results[i]
        meta = {"correlation_id": ids[i], "operation": operation_for(ev.event_type), "duration_ms": per_event}
        if isinstance(res, LineageValidationError):
            meta["error_type"] = "validation_error"
            failures.append({"event_index": i, "error": res.detail, "metadata": meta, "pattern_id": ev.pattern_id})
            continue
        meta["pattern_id"] = ev.pattern_id
        if res.get("status") == "already_exists":
            duplicates += 1
            meta["error_type"] = "unique_violation_handled"
        successes.append({"event_index": i, "data": res, "metadata": meta, "pattern_id": ev.pattern_id})
    return successes, failures, duplicates


async def _read_batch(request: web.Request, st: _State) -> _BatchIn | web.Response:
    """The request's valid, non-empty batch, or the error response (413 / 422 / 500 / 400) to send."""
    body = await _read_body(request, st)
    if isinstance(body, web.Response):
        return body
    await st.batches.between_executions()
    batch = _decode(body, _BatchIn)
    if isinstance(batch, web.Response):
        return batch
    if not batch.events:
        return _json({"detail": "Lineage tracking failed: empty batch"}, status=500)
    problem = st.lineage.validate_batch(batch.events)
    if problem is not None:
        return _json({"detail": problem}, status=400)
    return batch


async def track_batch(request: web.Request) -> web.Response:
    st = request.app[STATE]
    start = time.perf_counter()
    with st.batches.reading(start):
        batch = await _read_batch(request, st)
        if isinstance(batch, web.Response):
            return batch
        done = st.batches.submit(batch.events, start)
    events = batch.events
    mode = batch.processing_mode
    if mode not in ("parallel", "sequential"):
        mode = "sequential" if batch.sequential_processing else "parallel"
    try:
        results, per_event = await asyncio.wait_for(done, max(_TRACK_TIMEOUT, len(events) * 5.0))
    except (TimeoutError, asyncio.TimeoutError):
        return _json({"detail": "Batch tracking operation timed out"}, status=504)
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, (StoreError, lmdb.Error)):
            return _store_failure(exc)
        log.exception("batch lineage tracking failed")
        return _json({"detail": f"Batch lineage tracking failed: {exc}"}, status=500)

    successes, failures, duplicates = _batch_results(events, results, per_event)
    total_ms = (time.perf_counter() - start) * 1000
    n = len(events)
    return _json({
        "success": not failures,
        "batch_summary": {"total_events": n, "successful_events": len(successes), "failed_events": len(failures),
                          "handled_duplicates": duplicates, "processing_mode": mode,
                          "requested_processing_mode": batch.processing_mode},
        "successful_results": successes,
        "failed_results": failures or None,
        "metadata": {"processing_time_ms": round(total_ms, 2), "average_time_per_event": round(total_ms / n, 2),
                     "batch_efficiency_gain": round((n * 50.0 - total_ms) / (n * 50.0) * 100, 1)},
    })


async def lineage_graph(request: web.Request) -> web.Response:
    st = request.app[STATE]
    start = time.perf_counter()
    pattern_id = request.match_info["pattern_id"]
    query_type = request.query.get("query_type", "ancestry")
    operation = "query_ancestry" if query_type == "ancestry" else "query_descendants"
    fn = st.lineage.ancestry if query_type == "ancestry" else st.lineage.descendants
    try:
        t0 = time.perf_counter()
        data = await asyncio.wait_for(st.run(fn, pattern_id), _TRACK_TIMEOUT)
        duration = _ms(t0)
    except PatternNotFound as exc:
        return _json({"success": False, "error": exc.detail,
                      "metadata": {"correlation_id": str(uuid.uuid4()), "operation": operation,
                                   "duration_ms": _ms(start), "error_type": "validation_error"},
                      "processing_time_ms": _ms(start)}, status=404)
    except (TimeoutError, asyncio.TimeoutError):
        return _json({"detail": "Query operation timed out"}, status=504)
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, (StoreError, lmdb.Error)):
            return _store_failure(exc)
        log.exception("lineage query failed")
        return _json({"detail": f"Lineage query failed: {exc}"}, status=500)
    return _json({"success": True, "data": data,
                  "metadata": _meta(operation, pattern_id, duration, processing_time_ms=_ms(start),
                                    query_type=query_type)})


async def query(request: web.Request) -> web.Response:
    """Extension (never implemented by the real service): nodes of a file, oldest first."""
    st = request.app[STATE]
    start = time.perf_counter()
    file_path = request.query.get("file_path") or None
    raw_limit = request.query.get("limit", "100")
    try:
        limit = int(raw_limit)
    except ValueError:
        return _unprocessable([{"type": "int_parsing", "loc": ["query", "limit"],
                                "msg": "Input should be a valid integer, unable to parse string as an integer",
                                "input": raw_limit}])
    if not 1 <= limit <= 1000:
        return _unprocessable([{"type": "less_than_equal" if limit > 1000 else "greater_than_equal",
                                "loc": ["query", "limit"],
                                "msg": "Input should be less than or equal to 1000" if limit > 1000
                                else "Input should be greater than or equal to 1",
                                "input": raw_limit}])
    try:
        nodes = await st.run(st.lineage.query, file_path, limit)
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, (StoreError, lmdb.Error)):
            return _store_failure(exc)
        log.exception("lineage query failed")
        return _json({"detail": f"Lineage query failed: {exc}"}, status=500)
    return _json({"success": True, "data": {"file_path": file_path, "patterns": nodes, "total": len(nodes)},
                  "metadata": {"correlation_id": str(uuid.uuid4()), "operation": "query_file",
                               "processing_time_ms": _ms(start), "limit": limit}})


def _store_status(st: _State) -> str:
    if st.chaos is not None and st.chaos.degraded():
        return "database_unavailable"
    try:
        st.lineage.count()
        return "operational"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc}"


async def root_health(request: web.Request) -> web.Response:
    st = request.app[STATE]
    component = _store_status(st)
    status = "healthy" if component == "operational" else "degraded" if component == "database_unavailable" \
        else "unhealthy"
    return _json({"status": status,
                  "service": "pattern-tracker",
                  "service_version": __version__,
                  "uptime_seconds": round(time.monotonic() - st.started, 3),
                  "timestamp": datetime.now(timezone.utc).isoformat(),
                  "components": {"lineage_tracker": component}})


async def api_health(request: web.Request) -> web.Response:
    st = request.app[STATE]
    start = time.perf_counter()
    component = _store_status(st)
    now = time.monotonic()
    current = sum(1 for t in st.window if now - t < 60.0)
    return _json({"status": "healthy" if component == "operational" else "degraded",
                  "components": {"lineage_tracker": component, "usage_analytics": "operational",
                                 "feedback_orchestrator": "operational"},
                  "performance": {"rate_limiting": {"current_window_requests": current,
                                                    "max_requests_per_window": st.rate_limit,
                                                    "window_seconds": 60}},
                  "timestamp": datetime.now(timezone.utc).isoformat(),
                  "response_time_ms": _ms(start)})


# -- middlewares (outermost first) ---------------------------------------------------------------

_HEALTH_PATHS = frozenset({"/health", PREFIX + "/health"})


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """aiohttp's own 404/405/413 as FastAPI-like JSON ``{"detail": ...}``; a client gone while
    its body was read (or its connection closed by a chaos outage) is not an error of ours."""
    try:
        return await handler(request)
    except ConnectionResetError:
        log.debug("client connection lost while handling %s %s", request.method, request.path)
        return web.Response(status=400)  # nobody is there to read it
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
        return _json({"detail": exc.reason}, status=exc.status, headers=headers)


@web.middleware
async def _faults(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    hook = request.app[STATE].fault_hook
    if hook is not None and request.path.startswith("/api/"):
        injected = await hook(request)
        if injected is not None:
            return injected
    return await handler(request)


@web.middleware
async def _auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    token = request.app[STATE].token
    if token is not None and request.path not in _HEALTH_PATHS:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token):
            return _json({"detail": "Not authenticated"}, status=401, headers={"WWW-Authenticate": "Bearer"})
    return await handler(request)


@web.middleware
async def _rate_limit(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    st = request.app[STATE]
    if st.rate_limit > 0 and request.path.startswith(PREFIX + "/lineage"):
        now = time.monotonic()
        window = st.window
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= st.rate_limit:
            retry_after = max(1, math.ceil(window[0] + 60.0 - now))
            return _json({"detail": "Rate limit exceeded"}, status=429, headers={"Retry-After": str(retry_after)})
        window.append(now)
    return await handler(request)


# -- assembly -----------------------------------------------------------------------------------


def build_app(
    lineage: LineageStore,
    *,
    token: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    rate_limit_per_minute: int = 0,
    fault_hook: FaultHook | None = None,
    middlewares: Sequence[Middleware] = (),
    chaos: FaultInjector | None = None,
) -> web.Application:
    """The Phase 4 API over ``lineage``. ``rate_limit_per_minute=0`` means unlimited; ``fault_hook``
    (an async ``request -> response | None``) is consulted first on every /api request.
    ``middlewares`` (aiohttp middlewares) run after the fault hook, before authentication;
    ``chaos`` (pattern_tracker.service.chaos.Chaos) adds its middleware there too, reports the health endpoints
    degraded during its error and outage phases, and is started and stopped with the app."""
    extra = list(middlewares)
    if chaos is not None:
        extra.append(chaos.middleware)
    app = web.Application(middlewares=[_errors, _faults, *extra, _auth, _rate_limit], client_max_size=max_request_bytes)
    state = _State(lineage, token, max_request_bytes, rate_limit_per_minute, fault_hook, chaos)
    app[STATE] = state
    app.router.add_get("/health", root_health)
    app.router.add_get(PREFIX + "/health", api_health)
    app.router.add_post(PREFIX + "/lineage/track", track)
    app.router.add_post(PREFIX + "/lineage/track/batch", track_batch)
    app.router.add_get(PREFIX + "/lineage/query", query)  # before {pattern_id}
    app.router.add_get(PREFIX + "/lineage/{pattern_id}", lineage_graph)

    async def _shutdown(_app: web.Application) -> None:
        state.executor.shutdown(wait=True)

    app.on_cleanup.append(_shutdown)
    if chaos is not None:
        async def _chaos_start(_app: web.Application) -> None:
            await chaos.start()

        async def _chaos_stop(_app: web.Application) -> None:
            await chaos.close()

        app.on_startup.append(_chaos_start)
        app.on_shutdown.append(_chaos_stop)
    return app


async def run_server(
    host: str,
    port: int,
    lineage: LineageStore,
    *,
    token: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    rate_limit_per_minute: int = 0,
    fault_hook: FaultHook | None = None,
    middlewares: Sequence[Middleware] = (),
    chaos: FaultInjector | None = None,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled, SIGTERM or SIGINT. Prints ``serving Phase 4 API on http://HOST:PORT``
    to stderr (the bound port when ``port`` is 0); ``ready(url)`` is called once listening.
    With ``chaos``, a refused outage closes the listening socket for its phase and listens again
    on the same (bound) port afterwards."""
    app = build_app(lineage, token=token, max_request_bytes=max_request_bytes,
                    rate_limit_per_minute=rate_limit_per_minute, fault_hook=fault_hook,
                    middlewares=middlewares, chaos=chaos)
    runner = web.AppRunner(app, access_log=log if access_log else None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:  # in use, not permitted, unknown host: one line for the user, not a traceback
            raise ListenError(host, port, exc) from exc
        bound = runner.addresses[0]
        bound_host, bound_port = (bound[0], bound[1]) if isinstance(bound, tuple) else (host, port)
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        url = f"http://{shown}:{bound_port}"
        if chaos is not None:
            await chaos.attach_listener(SiteListener(runner, site, host, int(bound_port)))
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        print(f"serving Phase 4 API on {url}", file=sys.stderr, flush=True)
        if ready is not None:
            ready(url)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
