"""Shared pieces of the benchmarks: a `serve` subprocess, a free port, machine facts, result files."""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent / "pattern-tracker"


@contextmanager
def serve(data_dir: Path, script: str | Path = BIN, env: dict[str, str] | None = None) -> Iterator[str]:
    """`pattern-tracker serve --port 0` in its own process (``script``: another install's
    pattern-tracker; ``env``: its environment, default ours); yields the base URL."""
    env = {**(os.environ if env is None else env), "PATTERN_TRACKER_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([str(script), "serve", "--port", "0"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            m = re.search(r"serving Phase 4 API on (http://\S+)", proc.stderr.readline().decode())
            url = m.group(1) if m else None
        if url is None:
            raise RuntimeError("serve did not start")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


# ~700 B of code per event: the synthetic live edits of spill_drain and telemetry_overhead.
CODE = "def handler(event, context):\n    return {'status': 200, 'body': event.get('body', '')}\n" * 8


def producer(n: int) -> Any:
    """A source of ``n`` watch changes over 500 files (a new version each), 100 at a time."""
    from pattern_tracker.core.capture import Change

    async def source(feed: Any, stop: Any) -> None:
        for start in range(0, n, 100):
            await feed.changes([Change(path=f"/bench/f{i % 500}.py", code=f"{CODE}# {i}\n", occurred_at=time.time())
                                for i in range(start, min(n, start + 100))], "watch")
    return source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tally_batch_answer(counts: dict[str, int], status: int, raw: bytes, n: int,
                       decode: Callable[[bytes], Any]) -> None:
    """Add one batch request of ``n`` events to ``counts`` (``ok``, ``failed``, ``http_errors``):
    a 200's ``batch_summary`` (``decode``: the client's own decoder of the answer) says how many
    events succeeded; any other status fails the whole batch."""
    if status == 200:
        summary = decode(raw).batch_summary
        counts["ok"] += summary.successful_events
        counts["failed"] += summary.failed_events
    else:
        counts["http_errors"] += 1
        counts["failed"] += n


def machine() -> str:
    return f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · {platform.machine()}"


def write_result(name: str, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path.write_text(f"<!-- measured {stamp} on {machine()} -->\n{markdown}\n")
    return path
