"""docs/telemetry.md checked against a real `pattern-tracker run` and its Prometheus endpoint."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import msgspec

from pattern_tracker.model.events import build_event
from tests.clitools import BIN, cli_env, free_port, serve, stop, wait_for


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
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        assert proc.stdin is not None
        for i in range(3):
            proc.stdin.write(json.dumps({"file_path": f"/p/m{i}.py", "code": f"x = {i}\n"}).encode() + b"\n")
        proc.stdin.flush()  # stdin stays open: the run goes on

        def delivered() -> str:
            assert proc.poll() is None, log.read_text()
            body = _scrape(port)
            return body if _sample(body, "pattern_tracker_requests_succeeded_total") >= 1 and _sample(
                body, "pattern_tracker_retry_calls_total") == 3 else ""

        body = wait_for(delivered, timeout=60, what=f"the three events delivered, on the Prometheus endpoint ({log})")
        assert _sample(body, "pattern_tracker_stage_events_in_total", stage="source") == 3
        assert _sample(body, "pattern_tracker_stage_events_out_total", stage="validate") == 3
        assert _sample(body, "pattern_tracker_stage_events_out_total", stage="deliver") == 3
        assert "# TYPE pattern_tracker_stage_events_in_total counter" in body
    finally:
        stop(proc)


def test_a_parent_missing_spill_is_dropped_at_the_retry_stage(tmp_path: Path) -> None:
    """An event whose parent the service does not know goes back to the spool with the reason
    `parent_missing`, decided by the retry rule like `retries_exhausted`: the dropped counter
    names the stage `retry` (it said `spill`, the stage of reasons nobody placed)."""
    orphan = build_event(file_path="/p/child.py", code="x = 2\n", version=2, parent_pattern_id="0" * 64,
                         source="stdin", occurred_at=1.0)
    port = free_port()
    with serve(tmp_path / "service") as url:
        env = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL=url,
                      PATTERN_TRACKER__TELEMETRY__PROMETHEUS_PORT=str(port))
        proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            assert proc.stdin is not None
            proc.stdin.write(msgspec.json.encode(orphan) + b"\n")
            proc.stdin.flush()  # stdin stays open: the run goes on
            body = wait_for(lambda: (b := _scrape(port)) and _sample(
                b, "pattern_tracker_stage_dropped_total", reason="parent_missing") >= 1 and b,
                timeout=30, what="the orphan kept in the spool (parent_missing), on the Prometheus endpoint")
        finally:
            stop(proc)
    dropped = _sample(body, "pattern_tracker_stage_dropped_total", reason="parent_missing")
    assert _sample(body, "pattern_tracker_stage_dropped_total", reason="parent_missing", stage="retry") == dropped


def _stage_rows() -> dict[str, str]:
    """The Spans table of docs/telemetry.md: stage → its row."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "telemetry.md").read_text(encoding="utf-8")
    table = doc.split("## Spans", 1)[1].split("## Metrics", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", table, flags=re.MULTILINE))


def test_the_spans_of_a_console_run_are_those_the_spans_table_promises(tmp_path: Path) -> None:
    """`exporter: console` with every event sampled: a plain run emits the spans of source,
    validate, batch and deliver that the table promises, and none for a stage it says has none."""
    config = tmp_path / "console.yaml"
    config.write_text("telemetry:\n  exporter: console\n  event_span_sample_rate: 1.0\n")
    lines = b"".join(json.dumps({"file_path": f"/p/m{i}.py", "code": f"x = {i}\n"}).encode() + b"\n" for i in range(3))
    out = subprocess.run([str(BIN), "run", "--config", str(config), "--source", "stdin"], input=lines,
                         capture_output=True, env=cli_env(tmp_path / "data"), timeout=60, check=False)
    assert out.returncode == 0, out.stderr.decode()
    names = set(re.findall(r'"name": "pattern_tracker\.(\w+)"', out.stdout.decode()))
    rows = _stage_rows()
    for stage in ("source", "validate", "batch", "deliver"):
        assert (stage in names) == ("no span" not in rows[stage]), (stage, rows[stage], sorted(names))


def test_the_otlp_exporters_own_log_lines_go_through_our_logging(tmp_path: Path) -> None:
    """With logging.file and format json, the OTLP exporter's retry warnings went to stderr as plain
    text (Python's last resort), outside the log file and unscrubbed: its logger was not routed."""
    import sys

    log = tmp_path / "pt.log"
    code = (
        "import logging\n"
        "from pattern_tracker.logs import setup_logging\n"
        f"setup_logging(fmt='json', file={str(log)!r})\n"
        "logging.getLogger('opentelemetry.exporter.otlp.proto.http.trace_exporter').warning(\n"
        "    'Transient error %s encountered while exporting span batch to %s, retrying in %ss.',\n"
        "    'Service Unavailable', 'http://collector:s3cretpw@127.0.0.1:4318/v1/traces', 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=cli_env(tmp_path / "data"))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    [line] = log.read_text().splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and "Transient error" in record["msg"], record
    assert "s3cretpw" not in line and "collector:***@" in record["msg"], record
