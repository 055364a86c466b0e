"""docs/telemetry.md checked against a real `pattern-tracker run` and its Prometheus endpoint."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.clitools import BIN, cli_env, free_port, stop, wait_for


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return ""  # not listening yet


def _sample(body: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in body.splitlines():
        m = re.match(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_stage_counts_reach_a_scrape_while_the_run_goes_on(tmp_path: Path) -> None:
    """A run that has seen a few events (fewer than a stage's old bulk-add threshold, 256 calls)
    shows them in `pattern_tracker_stage_*_total` at once, as the requests counters do: a
    Prometheus server scrapes a live process, never its end."""
    port = free_port()
    env = cli_env(tmp_path / "data", PATTERN_TRACKER__TELEMETRY__PROMETHEUS_PORT=str(port))
    proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        assert proc.stdin is not None
        for i in range(3):
            proc.stdin.write(json.dumps({"file_path": f"/p/m{i}.py", "code": f"x = {i}\n"}).encode() + b"\n")
        proc.stdin.flush()  # stdin stays open: the run goes on
        body = wait_for(lambda: (b := _scrape(port)) and _sample(
            b, "pattern_tracker_retry_calls_total", kind="successful_without_retry") == 3 and b,
            timeout=30, what="the three events delivered, on the Prometheus endpoint")
        assert _sample(body, "pattern_tracker_stage_events_in_total", stage="source") == 3
        assert _sample(body, "pattern_tracker_stage_events_out_total", stage="validate") == 3
        assert _sample(body, "pattern_tracker_stage_events_out_total", stage="deliver") == 3
        assert "# TYPE pattern_tracker_stage_events_in_total counter" in body
    finally:
        stop(proc)
