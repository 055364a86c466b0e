"""The stand-in's middlewares, outermost first: errors as JSON, injected faults, the bearer token
(or the web UI's session cookie), the rate limit."""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from pattern_tracker.model.api import PREFIX
from pattern_tracker.service import ui_session
from pattern_tracker.service.app_state import STATE
from pattern_tracker.service.wire import json_response

__all__ = ["auth", "authenticated", "errors", "faults", "rate_limit"]

log = logging.getLogger("pattern_tracker.service.serve")  # one logger for the stand-in, whichever module

_HEALTH_PATHS = frozenset({"/health", PREFIX + "/health"})


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
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
        return json_response({"detail": exc.reason}, status=exc.status, headers=headers)


@web.middleware
async def faults(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    hook = request.app[STATE].fault_hook
    if hook is not None and request.path.startswith("/api/"):
        injected = await hook(request)
        if injected is not None:
            return injected
    return await handler(request)


@web.middleware
async def auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    st = request.app[STATE]
    token = st.token
    if token is not None and request.path not in _HEALTH_PATHS and not st.ui_public(request) \
            and not authenticated(request, token):
        return st.ui_denied(request) or json_response({"detail": "Not authenticated"}, status=401,
                                                      headers={"WWW-Authenticate": "Bearer"})
    return await handler(request)


def authenticated(request: web.Request, token: bytes) -> bool:
    """The bearer token in the header, or (reads only) the web UI's session cookie (service.ui_session)."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token):
        return True
    return ui_session.session_reads(request.method) and ui_session.valid(token, request.cookies.get(ui_session.COOKIE))


@web.middleware
async def rate_limit(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    st = request.app[STATE]
    if st.rate_limit > 0 and request.path.startswith(PREFIX + "/lineage"):
        now = time.monotonic()
        window = st.window
        while window and now - window[0] >= 60.0:
            window.popleft()
        if len(window) >= st.rate_limit:
            retry_after = max(1, math.ceil(window[0] + 60.0 - now))
            return json_response({"detail": "Rate limit exceeded"}, status=429, headers={"Retry-After": str(retry_after)})
        window.append(now)
    return await handler(request)
