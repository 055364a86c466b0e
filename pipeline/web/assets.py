"""The web faces' shared serving rules: static files from the package, and the headers every page gets.

Both the lineage explorer (``serve``) and the operations dashboard (the status port) serve files
shipped inside the package (``pattern_tracker/web/static``; no CDN, no network, no build step)
with one strict Content-Security-Policy: scripts and styles only from this origin, nothing inline,
no framing. Code and file names shown by the pages are untrusted; the CSP is the second fence
after the pages' own escaping (they only ever set ``textContent``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

__all__ = ["CSP", "SECURITY_HEADERS", "add_static", "secure_headers", "static_root"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def static_root() -> Path:
    """The package's static folder, its real path: the strict editable install links each file
    from ``build/`` to the source tree, and ``add_static`` (``follow_symlinks=False``) refuses a
    link that leaves its root, so the root is where the package's own ``__init__`` really is."""
    return Path(str(resources.files("pattern_tracker.web") / "__init__.py")).resolve().parent / "static"


def add_static(app: web.Application, prefix: str = "/ui/static") -> None:
    """Serve ``static_root()`` under ``prefix`` (no directory listings, no symlinks out of it)."""
    app.router.add_static(prefix, static_root(), show_index=False, follow_symlinks=False, append_version=False)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def secure_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer under ``/ui`` carries :data:`SECURITY_HEADERS` (static files keep a short
    cache), errors too: a raised ``HTTPException`` (the dashboard's 404, 405) is answered with
    the headers set on it."""
    ui = request.path == "/ui" or request.path.startswith("/ui/")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if ui:
            _secure(exc, request.path)
        raise
    if ui:
        _secure(response, request.path)
    return response


def _secure(response: web.StreamResponse, path: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        cached = name == "Cache-Control" and path.startswith("/ui/static/")
        response.headers[name] = "max-age=300" if cached else value
