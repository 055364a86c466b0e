"""The operations dashboard's HTTP face, on the status port (``run``/``watch``) and under
``pattern-tracker dashboard``:

    GET /                   redirects to /ui/
    GET /ui/                the page (pipeline/web/static/dashboard/index.html)
    GET /ui/api/dashboard   the page's document (usecases.dashboard); ``?since=T``: only the
                            history's points after T (epoch seconds), the page polls with it
    GET /ui/static/…        the page's scripts and styles, and the vendored uPlot

Read-only: no route changes anything. Every /ui answer carries the strict CSP of web.assets.
"""

from __future__ import annotations

import math

import msgspec
from aiohttp import web

from pattern_tracker.usecases.dashboard_sampler import Sampler
from pattern_tracker.web.assets import add_static, static_root

SAMPLER_KEY: web.AppKey[Sampler] = web.AppKey("dashboard_sampler", Sampler)
_encode = msgspec.json.Encoder().encode


async def _root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(static_root() / "dashboard" / "index.html",
                            headers={"Content-Type": "text/html; charset=utf-8"})


async def _document(request: web.Request) -> web.Response:
    raw = request.query.get("since")
    since = None
    if raw:
        try:
            since = float(raw)
        except ValueError:
            since = math.nan
        if not math.isfinite(since):
            return web.Response(body=_encode({"error": f"since must be a time in epoch seconds, got {raw[:40]!r}"}),
                                status=400, content_type="application/json")
    doc = request.app[SAMPLER_KEY].document(since)
    return web.Response(body=_encode(doc), content_type="application/json")


def add_dashboard(app: web.Application, sampler: Sampler) -> None:
    """The dashboard's routes on ``app`` (whose middlewares include ``assets.secure_headers``)."""
    app[SAMPLER_KEY] = sampler
    app.router.add_get("/", _root)
    app.router.add_get("/ui", _root)
    app.router.add_get("/ui/", _page)
    app.router.add_get("/ui/api/dashboard", _document)
    add_static(app)
