"""The stand-in's per-app state: what its handlers, middlewares and web faces share."""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from pattern_tracker.service.group_commit import BatchWriter
from pattern_tracker.service.listener import SiteListener
from pattern_tracker.sinks.lineage_contract import AsyncLineageBackend

__all__ = ["STATE", "FaultHook", "FaultInjector", "ServeState", "open_ui"]

FaultHook = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


class FaultInjector(Protocol):
    """What serve needs of a fault schedule (``service.chaos.Chaos``): serve never imports chaos,
    chaos builds on serve."""

    middleware: Any

    def degraded(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def attach_listener(self, listener: SiteListener) -> None: ...


class ServeState:
    def __init__(self, lineage: AsyncLineageBackend, token: str | None, max_request_bytes: int, rate_limit: int,
                 fault_hook: FaultHook | None, chaos: FaultInjector | None = None) -> None:
        self.lineage = lineage
        self.token = token.encode() if token else None
        self.max_request_bytes = max_request_bytes
        self.rate_limit = rate_limit
        self.fault_hook = fault_hook
        self.chaos = chaos
        self.batches = BatchWriter(lineage)
        # A store other processes write too (replicas): a parent may be in flight elsewhere (parent_wait).
        self.shared_store = getattr(lineage, "name", "lmdb") != "lmdb"
        self.started = time.monotonic()
        self.window: collections.deque[float] = collections.deque()
        self.ui_public: Callable[[web.Request], bool] = lambda _request: False
        self.ui_denied: Callable[[web.Request], web.StreamResponse | None] = lambda _request: None


STATE: web.AppKey[ServeState] = web.AppKey("pattern_tracker_serve_state", ServeState)


def open_ui(app: web.Application, *, public: Callable[[web.Request], bool],
            denied: Callable[[web.Request], web.StreamResponse | None]) -> None:
    """For a web face mounted on the app (the lineage explorer): the requests that need no token
    (``public``: its login page and static files), and its answer to an unauthenticated one
    (``denied``: e.g. a page load sent to the login; None keeps the 401)."""
    app[STATE].ui_public = public
    app[STATE].ui_denied = denied
