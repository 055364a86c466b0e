"""A local HTTP status endpoint for ``pattern-tracker run`` (``monitoring.status_port``, 0 = off)
and ``pattern-tracker dashboard``.

    GET /health        the health document of ``pattern-tracker health --json``;
                       HTTP 200 when healthy or degraded (still delivering or holding events
                       safely), 503 when unhealthy (docs/operations.md)
    GET /metrics.json  the document of ``pattern-tracker metrics --json``
    GET /ui/           the operations dashboard (pipeline/web/dashboard.py), fed by a sampler
                       that looks at the store every 2 s while the server runs

Bound to 127.0.0.1 by default: it is for a local supervisor, a load balancer's sidecar or a
user's browser, and has no authentication. Each request reads the store in a worker thread and,
for /health, asks the service's health endpoint (through this server's own sink).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from aiohttp import web

from pattern_tracker.service.listener import ListenError
from pattern_tracker.usecases import health as monitoring
from pattern_tracker.usecases.dashboard_sampler import Sampler
from pattern_tracker.web.assets import secure_headers
from pattern_tracker.web.dashboard import add_dashboard

log = logging.getLogger("pattern_tracker.usecases.health")

HOST = "127.0.0.1"
_encode = msgspec.json.Encoder().encode


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(doc), status=status, content_type="application/json")


class StatusServer:
    def __init__(self, cfg: Any, store: Any, port: int, host: str = HOST, sink: Any | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.host = host
        self.port = port
        self._sink = sink
        self._own_sink = sink is None
        self._runner: web.AppRunner | None = None
        self.sampler: Sampler | None = None
        self.url: str | None = None

    def _get_sink(self) -> Any:
        if self._sink is None:
            from pattern_tracker.composition import build_sink

            self._sink = build_sink(self.cfg, self.store)
        return self._sink

    async def health(self, request: web.Request) -> web.Response:
        try:
            snap = await monitoring.collect(self.cfg, self.store, self._get_sink())
            h = monitoring.assess(snap, monitoring.rules_for(self.cfg))
        except Exception as exc:  # noqa: BLE001 - a status endpoint answers, it does not crash
            log.warning("health check failed: %s: %s", type(exc).__name__, exc)
            return _json({"status": "unhealthy", "reasons": [{"severity": "unhealthy", "check": "internal",
                                                              "message": f"health check failed: {type(exc).__name__}"}]},
                         status=503)
        return _json(monitoring.health_document(snap, h), status=503 if h.status == "unhealthy" else 200)

    async def metrics(self, request: web.Request) -> web.Response:
        try:
            doc = await asyncio.to_thread(monitoring.error_metrics, self.cfg, self.store)
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics failed: %s: %s", type(exc).__name__, exc)
            return _json({"error": f"metrics failed: {type(exc).__name__}"}, status=500)
        return _json(doc)

    async def start(self) -> str:
        """Start the dashboard's sampler, then listen; a socket that cannot be opened is a
        :class:`ListenError` (one line naming the address)."""
        sampler = Sampler(self.cfg, self.store, self._get_sink)
        await sampler.start()  # its first look is taken before the first page can ask
        app = web.Application(middlewares=[secure_headers])
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics.json", self.metrics)
        add_dashboard(app, sampler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException as exc:
            await runner.cleanup()
            await sampler.stop()
            if isinstance(exc, OSError):
                raise ListenError(self.host, self.port, exc) from exc
            raise
        self._runner, self.sampler = runner, sampler
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"http://{shown}:{port}"
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        sampler, self.sampler = self.sampler, None
        if sampler is not None:
            await sampler.stop()
        if self._own_sink and self._sink is not None:
            sink, self._sink = self._sink, None
            await sink.close()
