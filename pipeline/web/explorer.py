"""The lineage explorer: the web pages ``pattern-tracker serve`` shows next to its API (docs/web-ui.md).

    GET  /                 redirects to /ui/
    GET  /ui/              the tracked files, filtered and paged (static/explorer/index.html)
    GET  /ui/file?path=P   one file's history: versions, code, diffs (static/explorer/file.html)
    GET  /ui/pattern?id=I  one node: its data, ancestry and descendants (static/explorer/pattern.html)
    GET  /ui/session       {"token_required": bool}: whether the pages show a log-out button
    GET  /ui/login         the login page when serve has a bearer token (else redirects to /ui/)
    POST /ui/login         checks the token, sets the session cookie (service.ui_session)
    POST /ui/logout        clears it
    GET  /ui/static/…      the pages' scripts and styles, and the vendored libraries

The pages are static files filled in by their scripts from JSON: the Phase 4 routes where they
fit, serve's stand-in endpoints (service.standin_api) for the rest. With a token, only the login
page and static files are served without it: a page load goes to the login, JSON answers 401.
Every /ui answer carries the strict CSP of web.assets; no page holds inline script or style.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from pattern_tracker.service import ui_session
from pattern_tracker.service.app_state import STATE, open_ui
from pattern_tracker.web.assets import add_static, secure_headers, static_root

__all__ = ["install"]

_PAGES = {"/ui/": "index.html", "/ui/file": "file.html", "/ui/pattern": "pattern.html", "/ui/login": "login.html"}
_PUBLIC = frozenset({"/ui/login", "/ui/logout"})
_MAX_FORM_BYTES = 8192


def install(app: web.Application) -> None:
    """Mount the explorer on serve's app (``service.serve.run_server(setup=install)``)."""
    app.middlewares.insert(0, secure_headers)  # outermost: error answers under /ui get the headers too
    app.router.add_get("/", _to_ui)
    app.router.add_get("/ui", _to_ui)
    for path in ("/ui/", "/ui/file", "/ui/pattern"):
        app.router.add_get(path, _page)
    app.router.add_get("/ui/login", _login_page)
    app.router.add_post("/ui/login", _login)
    app.router.add_post("/ui/logout", _logout)
    app.router.add_get("/ui/session", _session)
    add_static(app)
    open_ui(app, public=_public, denied=_denied)


def _public(request: web.Request) -> bool:
    return request.path in _PUBLIC or request.path.startswith("/ui/static/")


def _denied(request: web.Request) -> web.StreamResponse | None:
    """A page load without the token goes to the login (and comes back after); the rest gets the 401."""
    if request.method == "GET" and (request.path in _PAGES or request.path in ("/", "/ui")):
        target = request.path_qs if request.path in _PAGES else "/ui/"
        return _see_other(f"/ui/login?next={quote(target, safe='')}")
    return None


def _see_other(location: str, response: web.Response | None = None) -> web.Response:
    response = response or web.Response(status=303)
    response.set_status(303)
    response.headers["Location"] = location
    return response


def _safe_next(target: str | None) -> str:
    """Where a login returns to: one of our pages, never another site (``//host``, ``/\\host``)."""
    if not target or not target.startswith("/ui/") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/ui/"
    return target


async def _to_ui(request: web.Request) -> web.StreamResponse:
    return _see_other("/ui/")


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(static_root() / "explorer" / _PAGES[request.path],
                            headers={"Content-Type": "text/html; charset=utf-8"})


async def _login_page(request: web.Request) -> web.StreamResponse:
    if request.app[STATE].token is None:
        return _see_other("/ui/")
    return await _page(request)


async def _login(request: web.Request) -> web.StreamResponse:
    token = request.app[STATE].token
    if token is None:
        return _see_other("/ui/")
    if request.content_length is not None and request.content_length > _MAX_FORM_BYTES:
        return web.Response(status=413, text="login form too large")
    form = await request.post()
    presented = form.get("token")
    target = _safe_next(str(form.get("next") or ""))
    if not isinstance(presented, str) or not presented or not ui_session.token_matches(token, presented):
        return _see_other(f"/ui/login?failed=1&next={quote(target, safe='')}")
    response = _see_other(target)
    response.set_cookie(ui_session.COOKIE, ui_session.issue(token), max_age=ui_session.SESSION_SECONDS,
                        path="/", httponly=True, samesite="Strict")
    return response


async def _logout(request: web.Request) -> web.StreamResponse:
    response = _see_other("/ui/login" if request.app[STATE].token is not None else "/ui/")
    response.del_cookie(ui_session.COOKIE, path="/")
    return response


async def _session(request: web.Request) -> web.Response:
    return web.json_response({"token_required": request.app[STATE].token is not None})
