"""What tests against `serve` share: Phase 4 track bodies, one HTTP call, and a fault hook that
fails its deliveries on demand."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from pattern_tracker.model.api import PREFIX

TRACK = PREFIX + "/lineage/track"


def created(pid: str, file_path: str = "/src/a.py", **kw: Any) -> dict[str, Any]:
    return {"event_type": "pattern_created", "pattern_id": pid, "pattern_version": "1", "file_path": file_path,
            "pattern_data": {"code": f"# {pid}\n"}, **kw}


def modified(pid: str, parent: str, file_path: str = "/src/a.py", **kw: Any) -> dict[str, Any]:
    return {"event_type": "pattern_modified", "pattern_id": pid, "pattern_version": "1", "file_path": file_path,
            "parent_pattern_ids": [parent], "pattern_data": {"code": f"# {pid}\n"}, **kw}


async def call(method: str, url: str, *, json: Any = None, data: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, JSON body, headers) of one request, on a session of its own."""
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, json=json, data=data, headers=headers) as resp:
            body = await resp.json(content_type=None)
            return resp.status, body, resp.headers


class Faults:
    """A fault hook for `serve`: records every POST and answers with whatever ``mode`` says."""

    def __init__(self) -> None:
        self.mode: Callable[[web.Request], Awaitable[web.StreamResponse | None]] | None = None
        self.posts: list[float] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if request.method != "POST":
            return None
        self.posts.append(time.monotonic())
        return await self.mode(request) if self.mode else None


async def unavailable(_: web.Request) -> web.StreamResponse:
    return web.json_response({"detail": "Database connection not available"}, status=503)
