"""The stand-in service's aiohttp app: the Phase 4 routes, their handlers and middlewares.

Status codes and bodies mirror the real service (see :mod:`pattern_tracker.service.serve`); the
lineage store is any :class:`~pattern_tracker.sinks.lineage_contract.LineageBackend`, called on
one worker thread; batch requests that wait for it share one transaction (:mod:`.group_commit`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
from aiohttp import web

from pattern_tracker import __version__
from pattern_tracker.model.api import PREFIX
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.service import standin_api
from pattern_tracker.service.app_state import STATE, FaultHook, FaultInjector, ServeState
from pattern_tracker.service.middleware import auth, errors, faults, rate_limit
from pattern_tracker.service.parent_wait import settle_missing_parents
from pattern_tracker.service.wire import (
    decode_body,
    json_response,
    ms_since,
    op_metadata,
    read_body,
    store_failure,
    store_unavailable,
    unprocessable,
)
from pattern_tracker.sinks.lineage_contract import (
    AsyncLineageBackend,
    LineageBackend,
    LineageValidationError,
    PatternNotFound,
    TrackResult,
    operation_for,
)
from pattern_tracker.sinks.lineage_layout import random_uuids
from pattern_tracker.sinks.lineage_threaded import ThreadedLineage

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "Middleware", "build_app"]

log = logging.getLogger("pattern_tracker.service.serve")  # one logger for the stand-in, whichever module

DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
Middleware = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[web.StreamResponse]]

_TRACK_TIMEOUT = 30.0


class _BatchIn(msgspec.Struct, kw_only=True):
    """The service's batch body: processing_mode is free text (unknown values fall back)."""

    events: list[TrackRequest]
    batch_id: str | None = None
    processing_mode: str = "parallel"
    sequential_processing: bool = False
    timeout_per_event: float = 10.0


# -- handlers ---------------------------------------------------------------------------------------


async def _parse(request: web.Request, st: Any, type_: Any) -> Any:
    """The request body decoded as ``type_``, or the error response (413 / 422) to send."""
    body = await read_body(request, st.max_request_bytes)
    if isinstance(body, web.Response):
        return body
    return decode_body(body, type_)


async def track(request: web.Request) -> web.Response:
    st = request.app[STATE]
    start = time.perf_counter()
    req = await _parse(request, st, TrackRequest)
    if isinstance(req, web.Response):
        return req
    operation = operation_for(req.event_type)
    try:
        t0 = time.perf_counter()
        data = await asyncio.wait_for(_track_one(st, req), _TRACK_TIMEOUT)
        duration = ms_since(t0)
    except LineageValidationError as exc:
        if exc.kind == "static":
            return json_response({"detail": exc.detail}, status=400)
        return json_response({"success": False, "error": exc.detail, "detail": exc.detail,
                      "metadata": {"correlation_id": str(uuid.uuid4()), "operation": operation,
                                   "duration_ms": ms_since(start), "error_type": "validation_error"},
                      "processing_time_ms": ms_since(start)}, status=400)
    except (TimeoutError, asyncio.TimeoutError):
        return json_response({"detail": "Tracking operation timed out"}, status=504)
    except Exception as exc:  # noqa: BLE001 - mirrored as the service's 500/503
        return store_failure(exc)
    return json_response({"success": True, "data": data,
                  "metadata": op_metadata(operation, req.pattern_id, duration, processing_time_ms=ms_since(start))})


async def _track_one(st: ServeState, req: TrackRequest) -> dict[str, Any]:
    """One event; on a shared store, a parent still in flight on another replica is waited for."""
    try:
        return await st.lineage.track(req)
    except LineageValidationError as exc:
        if not (st.shared_store and exc.parent_missing):
            raise
        [result] = await settle_missing_parents([req], [exc], lambda evs: st.lineage.track_many(evs))
        if isinstance(result, LineageValidationError):
            raise result from None
        return result


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


async def _read_batch(request: web.Request, st: ServeState) -> _BatchIn | web.Response:
    """The request's valid, non-empty batch, or the error response (413 / 422 / 500 / 400) to send."""
    body = await read_body(request, st.max_request_bytes)
    if isinstance(body, web.Response):
        return body
    await st.batches.between_executions()
    batch = decode_body(body, _BatchIn)
    if isinstance(batch, web.Response):
        return batch
    if not batch.events:
        return json_response({"detail": "Lineage tracking failed: empty batch"}, status=500)
    problem = st.lineage.validate_batch(batch.events)
    if problem is not None:
        return json_response({"detail": problem}, status=400)
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
        if st.shared_store:
            async def again(evs: list[TrackRequest]) -> list[TrackResult]:
                return (await st.batches.submit(evs, start))[0]

            results = await settle_missing_parents(events, results, again)
    except (TimeoutError, asyncio.TimeoutError):
        return json_response({"detail": "Batch tracking operation timed out"}, status=504)
    except Exception as exc:  # noqa: BLE001
        if store_unavailable(exc):
            return store_failure(exc)
        log.exception("batch lineage tracking failed")
        return json_response({"detail": f"Batch lineage tracking failed: {exc}"}, status=500)

    await st.batches.between_executions()  # building the answer is loop work the store thread would wait for
    successes, failures, duplicates = _batch_results(events, results, per_event)
    total_ms = (time.perf_counter() - start) * 1000
    n = len(events)
    return json_response({
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
        data = await asyncio.wait_for(fn(pattern_id), _TRACK_TIMEOUT)
        duration = ms_since(t0)
    except PatternNotFound as exc:
        return json_response({"success": False, "error": exc.detail,
                      "metadata": {"correlation_id": str(uuid.uuid4()), "operation": operation,
                                   "duration_ms": ms_since(start), "error_type": "validation_error"},
                      "processing_time_ms": ms_since(start)}, status=404)
    except (TimeoutError, asyncio.TimeoutError):
        return json_response({"detail": "Query operation timed out"}, status=504)
    except Exception as exc:  # noqa: BLE001
        if store_unavailable(exc):
            return store_failure(exc)
        log.exception("lineage query failed")
        return json_response({"detail": f"Lineage query failed: {exc}"}, status=500)
    return json_response({"success": True, "data": data,
                  "metadata": op_metadata(operation, pattern_id, duration, processing_time_ms=ms_since(start),
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
        return unprocessable([{"type": "int_parsing", "loc": ["query", "limit"],
                                "msg": "Input should be a valid integer, unable to parse string as an integer",
                                "input": raw_limit}])
    if not 1 <= limit <= 1000:
        return unprocessable([{"type": "less_than_equal" if limit > 1000 else "greater_than_equal",
                                "loc": ["query", "limit"],
                                "msg": "Input should be less than or equal to 1000" if limit > 1000
                                else "Input should be greater than or equal to 1",
                                "input": raw_limit}])
    try:
        nodes = await st.lineage.query(file_path, limit)
    except Exception as exc:  # noqa: BLE001
        if store_unavailable(exc):
            return store_failure(exc)
        log.exception("lineage query failed")
        return json_response({"detail": f"Lineage query failed: {exc}"}, status=500)
    return json_response({"success": True, "data": {"file_path": file_path, "patterns": nodes, "total": len(nodes)},
                  "metadata": {"correlation_id": str(uuid.uuid4()), "operation": "query_file",
                               "processing_time_ms": ms_since(start), "limit": limit}})


async def _store_status(st: ServeState) -> tuple[str, dict[str, str]]:
    """The ``lineage_tracker`` component, and for a database store its own ``database`` component
    (``postgresql: operational`` or why not), which says which part is down."""
    if st.chaos is not None and st.chaos.degraded():
        return "database_unavailable", {}
    component = await st.lineage.status()
    name = getattr(st.lineage, "name", "lmdb")
    if name == "lmdb":
        return component, {}  # the embedded store is the lineage tracker: nothing more to name
    reason = component.partition(": ")[2] if component != "operational" else ""
    return component, {"database": f"{name}: {reason or component}"}


async def root_health(request: web.Request) -> web.Response:
    st = request.app[STATE]
    component, more = await _store_status(st)
    status = "healthy" if component == "operational" else "degraded" if component.startswith("database_unavailable") \
        else "unhealthy"
    return json_response({"status": status,
                  "service": "pattern-tracker",
                  "service_version": __version__,
                  "uptime_seconds": round(time.monotonic() - st.started, 3),
                  "timestamp": datetime.now(timezone.utc).isoformat(),
                  "components": {"lineage_tracker": component, **more}})


async def api_health(request: web.Request) -> web.Response:
    st = request.app[STATE]
    start = time.perf_counter()
    component, more = await _store_status(st)
    now = time.monotonic()
    current = sum(1 for t in st.window if now - t < 60.0)
    return json_response({"status": "healthy" if component == "operational" else "degraded",
                  "components": {"lineage_tracker": component, "usage_analytics": "operational",
                                 "feedback_orchestrator": "operational", **more},
                  "performance": {"rate_limiting": {"current_window_requests": current,
                                                    "max_requests_per_window": st.rate_limit,
                                                    "window_seconds": 60}},
                  "timestamp": datetime.now(timezone.utc).isoformat(),
                  "response_time_ms": ms_since(start)})


# -- assembly -----------------------------------------------------------------------------------


def build_app(
    lineage: LineageBackend | AsyncLineageBackend,
    *,
    token: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    rate_limit_per_minute: int = 0,
    fault_hook: FaultHook | None = None,
    middlewares: Sequence[Middleware] = (),
    chaos: FaultInjector | None = None,
    setup: Callable[[web.Application], None] | None = None,
) -> web.Application:
    """The Phase 4 API over ``lineage`` (a blocking backend is awaited on a worker thread of its
    own, :class:`ThreadedLineage`); the app starts and closes it. ``rate_limit_per_minute=0`` means unlimited; ``fault_hook``
    (an async ``request -> response | None``) is consulted first on every /api request.
    ``middlewares`` (aiohttp middlewares) run after the fault hook, before authentication;
    ``chaos`` (pattern_tracker.service.chaos.Chaos) adds its middleware there too, reports the health endpoints
    degraded during its error and outage phases, and is started and stopped with the app.
    ``setup(app)``, called last, mounts more on the app (serve's web UI: the web layer sits above
    this one, so it comes in through here)."""
    extra = list(middlewares)
    if chaos is not None:
        extra.append(chaos.middleware)
    app = web.Application(middlewares=[errors, faults, *extra, auth, rate_limit], client_max_size=max_request_bytes)
    backend: AsyncLineageBackend = lineage if inspect.iscoroutinefunction(getattr(lineage, "track", None)) \
        else ThreadedLineage(lineage)  # type: ignore[arg-type]
    state = ServeState(backend, token, max_request_bytes, rate_limit_per_minute, fault_hook, chaos)
    app[STATE] = state
    app.router.add_get("/health", root_health)
    app.router.add_get(PREFIX + "/health", api_health)
    app.router.add_post(PREFIX + "/lineage/track", track)
    app.router.add_post(PREFIX + "/lineage/track/batch", track_batch)
    app.router.add_get(PREFIX + "/lineage/query", query)  # before {pattern_id}
    app.router.add_get(PREFIX + "/lineage/{pattern_id}", lineage_graph)
    standin_api.install(app, backend)

    async def _start(_app: web.Application) -> None:
        await backend.start()

    async def _shutdown(_app: web.Application) -> None:
        await backend.close()

    app.on_startup.append(_start)
    app.on_cleanup.append(_shutdown)
    if chaos is not None:
        async def _chaos_start(_app: web.Application) -> None:
            await chaos.start()

        async def _chaos_stop(_app: web.Application) -> None:
            await chaos.close()

        app.on_startup.append(_chaos_start)
        app.on_shutdown.append(_chaos_stop)
    if setup is not None:
        setup(app)
    return app
