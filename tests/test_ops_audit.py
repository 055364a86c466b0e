"""What a new user scripting the operations commands relies on (docs/operations.md, docs/cli.md),
checked on the real console script in subprocesses."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import time
from pathlib import Path

from tests.clitools import BIN, cli_env, stop


def _start_line(args: list[str], env: dict[str, str]) -> tuple[str, str, int]:
    """(first stderr line, everything on stdout, exit code) of a long-running command stopped by SIGTERM."""
    proc = subprocess.Popen([str(BIN), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        line = b""
        deadline = time.monotonic() + 30  # a server that says nothing on stderr must not hang the test
        while not line.endswith(b"\n") and proc.poll() is None and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 0.1)[0]:
                line += proc.stderr.read1(1)  # type: ignore[attr-defined]
    finally:
        code = stop(proc, signal.SIGTERM)
    out = proc.stdout.read().decode()
    return line.decode(), out, code


def test_serve_and_dashboard_print_their_url_alike_on_stderr_and_nothing_on_stdout(tmp_path: Path) -> None:
    """A script starting either server reads its address from the same stream (stderr, as `run`'s
    status line): stdout stays for results. The dashboard printed its URL on stdout, serve on stderr."""
    env = cli_env(tmp_path / "data")
    line, out, code = _start_line(["serve", "--port", "0"], env)
    assert re.match(r"serving Phase 4 API on http://127\.0\.0\.1:\d+ ", line), line
    assert out == "" and code == 0
    line, out, code = _start_line(["dashboard", "--port", "0"], env)
    assert re.fullmatch(r"dashboard on http://127\.0\.0\.1:\d+/ui/ \(Ctrl-C to stop\)\n", line), (line, out)
    assert out == "" and code == 0
