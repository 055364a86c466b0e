"""Running the real `pattern-tracker` console script in subprocesses, as a user would."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

BIN = Path(sys.executable).parent / "pattern-tracker"
T = TypeVar("T")
ENV_DROP = ("PATTERN_TRACKING_", "PATTERN_TRACKER_", "INTELLIGENCE_SERVICE_URL", "CIRCUIT_BREAKER_",
             "EXPONENTIAL_BACKOFF_", "MONITORING_", "ALERTING_", "OTEL_")


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no inherited pattern-tracker settings (nor the user's config file), a private data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_DROP)}
    env["PATTERN_TRACKER_DATA_DIR"] = str(data_dir)
    env["XDG_CACHE_HOME"] = f"{data_dir}-cache"  # the hook's settings cache stays in the test's tmp dir
    env["XDG_CONFIG_HOME"] = f"{data_dir}-xdg-config"  # never the real user's ~/.config/pattern-tracker/config.yaml
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback port free when asked (bound, then released): nothing listens on it, so a
    connection to it is refused, until a server of the test binds it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, env: dict[str, str], input: bytes | None = None, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(BIN), *args], env=env, input=input, capture_output=True, timeout=timeout, cwd=cwd)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@contextmanager
def serve(data_dir: Path, *extra: str, env_extra: dict[str, str] | None = None, script: Path = BIN,
          cwd: Path | None = None) -> Iterator[str]:
    """`pattern-tracker serve --port 0` in a subprocess (``script``: another install's); yields its base URL."""
    env = cli_env(data_dir, **(env_extra or {}))
    proc = subprocess.Popen([str(script), "serve", "--port", "0", *extra], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, cwd=cwd)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        url = None
        while time.monotonic() < deadline:
            line = proc.stderr.readline().decode()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"serving Phase 4 API on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, f"serve did not start (exit {proc.poll()})"
        # Keep reading its stderr: a serve whose log lines fill the pipe would block on its next one.
        threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
        yield url
    finally:
        stop(proc)


@contextmanager
def dashboard(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`pattern-tracker dashboard ARGS` in a subprocess; yields it and the page's URL (its start line, on stderr)."""
    proc = subprocess.Popen([str(BIN), "dashboard", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        m = re.search(r"dashboard on (http://\S+)", line)
        assert m, f"no URL: {line!r} {proc.stderr.read().decode() if proc.poll() is not None else ''}"
        yield proc, m.group(1)
    finally:
        stop(proc)


def _drain(stream: IO[bytes]) -> None:
    for _ in stream:
        pass


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (AssertionError
    naming ``what``). Tests wait on the event itself, never on a fixed sleep: a loaded machine only makes
    them slower, not wrong. For a negative check, first wait for a later positive marker."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01,
                         what: str = "condition") -> T:
    """:func:`wait_for` inside an event loop: polls with ``asyncio.sleep`` so the loop's own tasks
    (servers, pipelines, watchers under test) keep running while we wait."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout}s")
        await asyncio.sleep(interval)
