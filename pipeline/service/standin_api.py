"""The stand-in's own read endpoints, for the lineage explorer: NOT part of the Phase 4 service's contract.

The real service has none of these; they live under ``/standin/v1`` so nobody mistakes them for
its API (docs/web-ui.md). The explorer reads the Phase 4 routes where they fit (a node's ancestry
and descendants) and these for the rest:

* ``GET /standin/v1/files?search=&after=&limit=`` — one page of tracked files (``FilesPage``);
* ``GET /standin/v1/file?path=&limit=`` — a file's versions, oldest first, without their code;
* ``GET /standin/v1/pattern?id=&version=`` — one node, code included;
* ``GET /standin/v1/patterns?id=A&id=B…`` — several nodes without their code (a graph's links).

Bad parameters are 422s in the service's shape, an unreachable store 503 with Retry-After, and
authentication is the app's (bearer token, or the UI's session cookie for reads).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web
from pattern_tracker.service.wire import (
    json_response,
    ms_since,
    store_failure,
    unprocessable,
)
from pattern_tracker.sinks.lineage_contract import AsyncLineageBackend
from pattern_tracker.sinks.lineage_listing import edit_time

__all__ = ["PREFIX", "install"]

PREFIX = "/standin/v1"
MAX_PAGE = 200  # files per page
MAX_VERSIONS = 1000  # a file's versions in one answer (the store's query limit)
MAX_IDS = 200  # nodes per /patterns call
_HEAD_FIELDS = ("pattern_id", "pattern_version", "pattern_name", "pattern_node_id", "lineage_id", "generation",
                "event_type", "edge_type", "transformation_type", "created_at", "file_path", "language",
                "tool_name", "parent_pattern_ids")


def install(app: web.Application, backend: AsyncLineageBackend) -> None:
    """Add the routes to ``app``, reading ``backend``."""
    api = _Api(backend)
    app.router.add_get(PREFIX + "/files", api.files)
    app.router.add_get(PREFIX + "/file", api.file)
    app.router.add_get(PREFIX + "/pattern", api.pattern)
    app.router.add_get(PREFIX + "/patterns", api.patterns)


class _Invalid(Exception):
    """A query parameter that fails its rule: the 422's one detail entry."""

    def __init__(self, kind: str, name: str, msg: str, value: Any, **ctx: Any) -> None:
        super().__init__(msg)
        self.detail = {"type": kind, "loc": ["query", name], "msg": msg, "input": value, **({"ctx": ctx} if ctx else {})}


def _text(request: web.Request, name: str, *, max_length: int, required: bool = False) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        if required:
            raise _Invalid("missing", name, "Field required", None)
        return None
    if len(value) > max_length:
        raise _Invalid("string_too_long", name, f"String should have at most {max_length} characters", value,
                       max_length=max_length)
    return value


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Invalid("int_parsing", name, "Input should be a valid integer, unable to parse string as an integer",
                       raw) from None
    if value < lo:
        raise _Invalid("greater_than_equal", name, f"Input should be greater than or equal to {lo}", raw, ge=lo)
    if value > hi:
        raise _Invalid("less_than_equal", name, f"Input should be less than or equal to {hi}", raw, le=hi)
    return value


def _answer(data: Any, operation: str, start: float) -> web.Response:
    return json_response({"success": True, "data": data,
                          "metadata": {"correlation_id": str(uuid.uuid4()), "operation": operation,
                                       "processing_time_ms": ms_since(start), "standin_extension": True}})


def _version_row(node: dict[str, Any]) -> dict[str, Any]:
    """One version of a file for the timeline: what it is and how big, not its code."""
    data = node.get("pattern_data")
    data = data if isinstance(data, dict) else {}
    code = data.get("code")
    code = code if isinstance(code, str) else ""
    session = data.get("session_id")
    return {
        **{k: node.get(k) for k in _HEAD_FIELDS},
        "edit_time": edit_time(data.get("occurred_at")) or node.get("created_at"),
        "session_id": session if isinstance(session, str) and session else None,
        "size_bytes": len(code.encode("utf-8", "surrogatepass")),
        "lines": code.count("\n") + (1 if code and not code.endswith("\n") else 0),
        "content_hash": data.get("content_hash") if isinstance(data.get("content_hash"), str) else None,
    }


class _Api:
    def __init__(self, backend: AsyncLineageBackend) -> None:
        self.backend = backend

    async def files(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        try:
            search = _text(request, "search", max_length=500)
            after = _text(request, "after", max_length=4096)
            limit = _int(request, "limit", 50, 1, MAX_PAGE)
            page = await self.backend.list_files(search, after, limit)
        except _Invalid as exc:
            return unprocessable([exc.detail])
        except Exception as exc:  # noqa: BLE001 - the service's 503 / 500
            return store_failure(exc)
        return _answer(page, "standin_list_files", start)

    async def file(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        try:
            path = _text(request, "path", max_length=4096, required=True)
            limit = _int(request, "limit", MAX_VERSIONS, 1, MAX_VERSIONS)
            nodes = await self.backend.query(path, limit + 1)  # one more: are there more than limit?
        except _Invalid as exc:
            return unprocessable([exc.detail])
        except Exception as exc:  # noqa: BLE001
            return store_failure(exc)
        versions = [_version_row(n) for n in nodes[:limit]]
        return _answer({"file_path": path, "versions": versions, "total": len(versions),
                        "truncated": len(nodes) > limit}, "standin_file_versions", start)

    async def pattern(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        try:
            pattern_id = _text(request, "id", max_length=255, required=True)
            version = _text(request, "version", max_length=50)
            node = await self.backend.get(pattern_id, version)  # type: ignore[arg-type]
        except _Invalid as exc:
            return unprocessable([exc.detail])
        except Exception as exc:  # noqa: BLE001
            return store_failure(exc)
        if node is None:
            shown = pattern_id if version is None else f"{pattern_id} version {version}"
            return json_response({"detail": f"Pattern not found: {shown}"}, status=404)
        return _answer(node, "standin_get_pattern", start)

    async def patterns(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        ids = request.query.getall("id", [])
        if not ids or len(ids) > MAX_IDS or any(not i or len(i) > 255 for i in ids):
            return unprocessable([{"type": "value_error", "loc": ["query", "id"],
                                   "msg": f"Give 1 to {MAX_IDS} ids, each 1 to 255 characters", "input": ids[:3]}])
        try:
            nodes = [await self.backend.get(i) for i in dict.fromkeys(ids)]
        except Exception as exc:  # noqa: BLE001
            return store_failure(exc)
        heads = {n["pattern_id"]: {k: n.get(k) for k in _HEAD_FIELDS} for n in nodes if n is not None}
        return _answer({"patterns": heads, "missing": [i for i in dict.fromkeys(ids) if i not in heads]},
                       "standin_get_patterns", start)
