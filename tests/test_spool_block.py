"""overflow_policy ``block``: a full spool makes sources wait for room, and the wait ends on a stop.

With the service down the spool cannot drain, so a blocked ``run`` only ends when it is told
to; it must then end promptly, with every record it read in the spool and the input it could
not take left unread (a pipe keeps it for whoever reads next). Real subprocesses, real LMDB,
a loopback port nobody listens on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.clitools import BIN, cli_env, free_port, run_cli, wait_for

BOUND = 10
SHUTDOWN_TIMEOUT = 3.0


@pytest.fixture
def closed_port() -> int:
    return free_port()


def _records(n: int) -> list[bytes]:
    return [json.dumps({"file_path": f"/proj/f{i}.py", "code": f"x = {i}\n"}).encode() + b"\n" for i in range(n)]


def _block_env(data: Path, api_url: str | None) -> dict[str, str]:
    extra = {"PATTERN_TRACKING_CACHE_SIZE": str(BOUND),
             "PATTERN_TRACKER__PATTERN_TRACKING__OVERFLOW_POLICY": "block",
             "PATTERN_TRACKER__PATTERN_TRACKING__SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)}
    if api_url:
        extra["PATTERN_TRACKING_API_URL"] = api_url
    return cli_env(data, **extra)


def _spool_size(env: dict[str, str]) -> int:
    out = run_cli("cache", "stats", "--json", env=env)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["bound"] == BOUND and stats["overflow_policy"] == "block"
    return int(stats["size"])


def _spooled_paths(data: Path) -> list[str]:
    """The file paths of the spool's events, oldest first (read after the run has exited)."""
    from pattern_tracker.state.spool import Spool
    from pattern_tracker.core.store import Store

    store = Store.open(data)
    try:
        return [entry.event.file_path for _, entry in Spool(store).read_batch(0, 1000)]
    finally:
        store.close()


def test_sigterm_ends_a_run_blocked_on_a_full_spool_and_leaves_the_rest_of_stdin_unread(tmp_path: Path, closed_port: int) -> None:
    data = tmp_path / "data"
    env = _block_env(data, f"http://127.0.0.1:{closed_port}")
    records = _records(5 * BOUND)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"".join(records))  # a live producer: the pipe stays open
        with open(tmp_path / "run.err", "wb") as err:
            proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], stdin=read_end, stdout=subprocess.DEVNULL,
                                    stderr=err, env=env)
        try:
            wait_for(lambda: _spool_size(env) == BOUND, timeout=30, interval=0.1)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(SHUTDOWN_TIMEOUT + 2)
            took = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr = (tmp_path / "run.err").read_text()
        os.close(write_end)
        write_end = -1
        rest = b""
        while chunk := os.read(read_end, 1 << 16):
            rest += chunk
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert took <= SHUTDOWN_TIMEOUT + 2, (took, stderr)
    assert code == 130, stderr  # docs/cli.md#exit-codes: stopped while waiting for room in the full spool
    assert f"done: read {BOUND}, unchanged 0, delivered 0" in stderr and f"left in spool {BOUND} " in stderr, stderr
    assert "stopped while waiting for room in the full spool" in stderr, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    # Every record read is in the spool, the rest is still in the pipe: nothing read and dropped,
    # nothing read twice, the stream cut at a line boundary.
    assert _spooled_paths(data) == [f"/proj/f{i}.py" for i in range(BOUND)]
    assert rest == b"".join(records[BOUND:])
    assert _spool_size(env) == BOUND


def test_block_waits_for_room_and_delivers_more_than_the_bound(tmp_path: Path) -> None:
    """The service up (the embedded store): a full spool only slows stdin down; all arrive, exit 0."""
    data = tmp_path / "data"
    env = _block_env(data, None)
    out = run_cli("run", "--source", "stdin", env=env, input=b"".join(_records(5 * BOUND)), timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"done: read {5 * BOUND}, unchanged 0, delivered {5 * BOUND}," in out.stderr, out.stderr
    assert "left in spool 0 " in out.stderr, out.stderr


def _fill_spool(data: Path, n: int) -> None:
    """``n`` events in the spool, as earlier runs leave them while the service is down."""
    from pattern_tracker.core.capture import Change
    from pattern_tracker.state.ingest import Ingest
    from pattern_tracker.core.store import Store

    store = Store.open(data)
    try:
        now = time.time()
        Ingest(store).accept_changes([Change(path=f"/earlier/f{i}.py", code=f"y = {i}\n", occurred_at=now)
                                      for i in range(n)], "stdin", now)
    finally:
        store.close()


def test_sigterm_ends_a_watch_blocked_on_a_full_spool_and_the_next_start_finds_the_edit(tmp_path: Path, closed_port: int) -> None:
    data = tmp_path / "data"
    _fill_spool(data, BOUND)
    proj = tmp_path / "proj"
    proj.mkdir()
    target = Path(os.path.realpath(proj)) / "app.py"
    target.write_text("def f():\n    return 1\n")
    env = _block_env(data, f"http://127.0.0.1:{closed_port}")
    err_path = tmp_path / "watch.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([str(BIN), "watch", str(proj)], stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        wait_for(lambda: "reading waits for room" in err_path.read_text(), timeout=30)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(SHUTDOWN_TIMEOUT + 2)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err_path.read_text()
    assert took <= SHUTDOWN_TIMEOUT + 2, (took, stderr)
    assert code == 130, stderr
    assert "done: read 0, unchanged 0, delivered 0" in stderr and f"left in spool {BOUND} " in stderr, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert _spooled_paths(data) == [f"/earlier/f{i}.py" for i in range(BOUND)]
    # The edit was not taken (its version not handed out): the next start's scan finds it.
    again = _block_env(data, None)  # the embedded store: deliveries make room
    proc = subprocess.Popen([str(BIN), "watch", str(proj)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=again)
    try:
        wait_for(lambda: "1 version(s)" in run_cli("query", "--file", str(target), env=again).stdout, timeout=30, interval=0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(SHUTDOWN_TIMEOUT + 2) == 0
