"""``serve``: the Phase 4 Pattern Traceability API (the Phase 4 API contract, docs/phase4-contract.md)
over the embedded store.

Status codes and bodies mirror the real service so either side can be swapped for the other:
200 success bodies with ``data`` + ``metadata``; 422 pydantic-like ``detail`` lists; 400
``{"detail": ...}`` for static rule violations (a batch is refused as a whole) and, like the
service, ``{"success": false, "error": "Validation error: ..."}`` (plus ``detail``) for rules that
depend on stored state (e.g. a missing parent); 404 for an unknown pattern's lineage; 429 with
Retry-After; 413 for oversize bodies; 401 when a token is configured and not presented.

LMDB work runs on one worker thread (``loop.run_in_executor``); batch requests that wait for it
share one write transaction (:mod:`.group_commit`). Request bodies (code) and tokens are never logged.

The parts: :mod:`.app` (routes, handlers, middlewares, ``build_app``), :mod:`.wire` (request
decoding, JSON answers), :mod:`.group_commit` (the batch writer), :mod:`.listener` (the listening
socket); this module runs the server and is the public face callers import.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from pattern_tracker.model.api import PREFIX
from pattern_tracker.service.app import DEFAULT_MAX_REQUEST_BYTES, Middleware, build_app
from pattern_tracker.service.app_state import FaultHook, FaultInjector
from pattern_tracker.service.listener import ListenError, SiteListener
from pattern_tracker.sinks.lineage_contract import AsyncLineageBackend, LineageBackend

__all__ = [
    "build_app",
    "run_server",
    "settle_garbage_collection",
    "ListenError",
    "PREFIX",
    "FaultHook",
    "FaultInjector",
    "SiteListener",
    "DEFAULT_MAX_REQUEST_BYTES",
]

log = logging.getLogger("pattern_tracker.service.serve")

GC_THRESHOLD0 = 10_000  # container allocations between young collections (Python's default: 700)


def settle_garbage_collection() -> None:
    """For the serve process, once listening (``cli serve`` passes it as ``ready``; a process that
    embeds ``run_server``, e.g. a test, keeps its own collector): the objects made at start-up never
    become garbage, so the collector stops walking them (``gc.freeze``), and it runs less often.
    Why: each batch decodes ~3 container objects per event; at the default threshold the collector
    ran ~12 times a second under load, ~0.17 s per 20,000 events (~8 µs an event, holding the GIL
    the store thread waits for); now a few times a run. Garbage with cycles is still collected, later."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD0, *gc.get_threshold()[1:])


async def run_server(
    host: str,
    port: int,
    lineage: LineageBackend | AsyncLineageBackend,
    *,
    token: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    rate_limit_per_minute: int = 0,
    fault_hook: FaultHook | None = None,
    middlewares: Sequence[Middleware] = (),
    chaos: FaultInjector | None = None,
    access_log: bool = False,
    ready: Callable[[str], None] | None = None,
    store: str | None = None,
    setup: Callable[[web.Application], None] | None = None,
) -> None:
    """Serve until cancelled, SIGTERM or SIGINT. Prints ``serving Phase 4 API on http://HOST:PORT``
    to stderr (the bound port when ``port`` is 0), followed by `` (store: STORE)`` when ``store``
    (how the lineage store is shown: no password) is given; ``ready(url)`` is called once listening.
    The store is opened before listening: one that cannot be reached raises ``LineageUnavailable``.
    With ``chaos``, a refused outage closes the listening socket for its phase and listens again
    on the same (bound) port afterwards. ``setup(app)`` mounts more on the app (``build_app``)."""
    app = build_app(lineage, token=token, max_request_bytes=max_request_bytes,
                    rate_limit_per_minute=rate_limit_per_minute, fault_hook=fault_hook,
                    middlewares=middlewares, chaos=chaos, setup=setup)
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
        label = f" (store: {store})" if store else ""
        print(f"serving Phase 4 API on {url}{label}", file=sys.stderr, flush=True)
        if ready is not None:
            ready(url)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
