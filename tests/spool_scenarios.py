"""Scenarios the spool tests share: the environment of a small spool, a port nothing listens on,
hook edits through the real hook, and a service that refuses every delivery while hooks fill the spool."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from aiohttp import web

from pattern_tracker.core.capture import Change
from pattern_tracker.core.store import Store
from pattern_tracker.state.ingest import Ingest
from pattern_tracker.state.spool import Spool, SpoolLimits
from tests.clitools import run_cli
from tests.hooktools import payloads
from tests.threaded_app import ThreadedApp

BOUND, TOTAL = 50, 200
FAST = {"EXPONENTIAL_BACKOFF_BASE_DELAY": "0.01", "EXPONENTIAL_BACKOFF_MAX_DELAY": "0.05",
        "PATTERN_TRACKER__PATTERN_TRACKING__SHUTDOWN_TIMEOUT": "3",
        "PATTERN_TRACKER__HOOK__SPAWN_DRAINER": "false",  # the hook's events stay in the spool for us to see
        "PATTERN_TRACKING_CACHE_SIZE": str(BOUND)}  # overflow_policy: the default, drop_oldest


def balanced(stats: dict) -> bool:
    """`cache stats --json`'s balance: each entry that entered the spool left it once
    (acknowledged, dead-lettered, expired, moved to the quarantine, dropped: a newcomer refused
    by drop_newest never entered) or is still there."""
    left = stats["acked"] + stats["lettered"] + stats["expired"] + stats["unreadable"]
    dropped = stats["dropped"] - stats["dropped_by_reason"].get("overflow_newest", 0)
    return stats["entered"] == left + dropped + stats["size"]


def hook_edits(env: dict[str, str], root: Path, n: int) -> None:
    """``n`` Write payloads as Claude Code sends them, each to a file of its own, through the real hook."""
    write = next(p for p in payloads() if p["tool_name"] == "Write")
    for i in range(n):
        doc = json.loads(json.dumps(write))
        doc["tool_input"]["file_path"] = str(root / f"edit_{i}.py")
        doc["tool_input"]["content"] = f"def edit_{i}():\n    return {i}\n"
        doc["tool_response"]["filePath"] = doc["tool_input"]["file_path"]
        res = run_cli("hook", env=env, input=json.dumps(doc).encode())
        assert res.returncode == 0, res.stderr


class RefusingService(ThreadedApp):
    """A Phase 4 service that answers 503 to every delivery, in a thread; at its first request it
    fills the spool of ``data`` to ``bound`` the way hooks do (while the replay's events are in flight)."""

    def __init__(self, data: Path, bound: int) -> None:
        self.data, self.bound = data, bound
        self.filled: list[str] = []
        super().__init__()

    def _fill(self) -> None:
        store = Store.open(self.data)
        try:
            ingest = Ingest(store, Spool(store, SpoolLimits(self.bound, "drop_oldest")), make_event=lambda f: f)
            now = time.time()
            changes = [Change(path=f"/proj/live_{i}.py", code=f"LIVE = {i}\n", occurred_at=now)
                       for i in range(self.bound - Spool(store).size())]
            self.filled = [ev["event_id"] for ev in ingest.accept_changes(changes, "hook", now)]
        finally:
            store.close()

    async def _track(self, request: web.Request) -> web.Response:
        await request.read()
        if not self.filled:
            await asyncio.get_running_loop().run_in_executor(None, self._fill)
        return web.json_response({"error": "unavailable"}, status=503)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._track)
        return app
