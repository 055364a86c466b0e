"""`pattern-tracker status`, the drain progress bar, JSON logs and the Python facade
(`pipeline.PatternTracker`), as a user runs them: real console-script subprocesses (under a
pseudo-terminal where a terminal matters) over a real data directory."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.clitools import BIN, cli_env, run_cli, serve, wait_for

FAST = {"EXPONENTIAL_BACKOFF_BASE_DELAY": "0.01", "EXPONENTIAL_BACKOFF_MAX_DELAY": "0.02",
        "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2"}
AWS = "AKIAIOSFODNN7EXAMPLE"
TOKEN = "tok-do-not-log-4242"


def changes(*pairs: tuple[str, str]) -> bytes:
    return "".join(json.dumps({"file_path": p, "code": c}) + "\n" for p, c in pairs).encode()


def ok(*args: str, env: dict[str, str], input: bytes | None = None, code: int = 0):
    out = run_cli(*args, env=env, input=input)
    assert out.returncode == code, f"{args}: exit {out.returncode}\nstdout: {out.stdout}\nstderr: {out.stderr}"
    assert "Traceback" not in out.stderr
    return out


def pty_run(args: list[str], env: dict[str, str], *, tty: str, until=None, sig: int | None = None,
            timeout: float = 30) -> tuple[int, str, str]:
    """Run the CLI with stdout or stderr (``tty``) on a pseudo-terminal; returns (rc, tty text, other text).

    ``until(text)``: once true, send ``sig`` to the process (e.g. SIGINT after some refreshes).
    """
    master, slave = pty.openpty()
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, tty: slave}
    proc = subprocess.Popen([str(BIN), *args], env=env, stdin=subprocess.DEVNULL, **streams)
    os.close(slave)
    other = proc.stderr if tty == "stdout" else proc.stdout
    chunks: list[bytes] = []
    signalled = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not data:
                    break
                chunks.append(data)
            if until is not None and not signalled and until(b"".join(chunks).decode(errors="replace")):
                proc.send_signal(sig or signal.SIGINT)
                signalled = True
            if proc.poll() is not None and not ready:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert other is not None
    return rc, b"".join(chunks).decode(errors="replace"), other.read().decode()


def pipe_run(args: list[str], env: dict[str, str], *, until, sig: int, timeout: float = 30) -> tuple[int, str, str]:
    """Run the CLI on pipes; once its stdout so far satisfies ``until(text)``, send ``sig``.
    Returns (rc, stdout, stderr). Waits on the output itself, not on a guessed duration."""
    proc = subprocess.Popen([str(BIN), *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    chunks: list[bytes] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            chunks.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: proc.poll() is not None or until(b"".join(list(chunks)).decode(errors="replace")),
                 timeout=timeout, what=f"the output of {' '.join(args)}")
        proc.send_signal(sig)
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout)
    return rc, b"".join(chunks).decode(), err


# ---------------------------------------------------------------------------------------
# status


def test_status_json_and_text_after_a_real_run(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    ok("run", "--source", "stdin", env=env, input=changes(("/p/a.py", "a = 1"), ("/p/b.py", "b = 2"), ("/p/a.py", "a = 3")))
    data = json.loads(ok("status", "--json", env=env).stdout)
    assert data["circuit"]["state"] == "closed"
    one = data["throughput"]["last_1m"]
    assert one["delivered"] == 3 and one["events_per_second"] > 0 and one["window_seconds"] >= 60
    assert data["spool"]["size"] == 0 and data["spool"]["bound"] == 1000 and data["spool"]["oldest_age"] is None
    assert data["dead_letters"] == 0
    assert data["errors"]["failed"] == 0 and data["errors"]["requests"] >= 1
    assert data["latency"]["count"] >= 1 and data["latency"]["p50_ms"] is not None and data["latency"]["p99_ms"] is not None
    assert data["last_delivery_at"] is not None and data["last_delivery_age"] < 60
    assert data["drainer"] is None and data["target"] == "embedded lineage store"

    text = ok("status", env=env).stdout
    for field in ("circuit:", "closed", "throughput:", "ev/s last 1m", "last 5m", "spool:", "0 / 1000 events",
                  "dead letters:", "errors:", "latency:", "p50", "p95", "p99", "last delivery:", "ago", "drainer:"):
        assert field in text, (field, text)
    assert len(text.splitlines()) <= 24  # one screen

    # With the service down: the circuit opens, events wait in the spool, errors are counted.
    down = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL="http://127.0.0.1:9", **FAST)
    ok("run", "--source", "stdin", env=down, input=changes(("/p/c.py", "c = 1")))
    data = json.loads(ok("status", "--json", env=down).stdout)
    assert data["circuit"]["state"] == "open" and data["circuit"]["retry_at"] is not None
    assert data["spool"]["size"] == 1 and data["spool"]["oldest_age"] is not None
    assert data["errors"]["failed"] >= 2 and data["errors"]["by_class"]
    text = ok("status", env=down).stdout
    assert "open" in text and "next trial:" in text and "1 / 1000 events" in text and "failed in 5m" in text
    assert "127.0.0.1:9" in text


def test_status_watch_refreshes_until_ctrl_c(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    ok("run", "--source", "stdin", env=env, input=changes(("/p/a.py", "a = 1")))

    # Not a terminal: plain blocks, one after another; SIGINT ends it with 0.
    rc, text, err = pipe_run(["status", "--watch", "--interval", "0.1"], env, sig=signal.SIGINT,
                             until=lambda t: t.count("pattern-tracker status ") >= 3)
    assert rc == 0, err
    assert text.count("pattern-tracker status ") >= 3 and "\x1b[" not in text and err == ""

    # On a terminal: clear + home each time, cursor hidden then restored; Ctrl-C → 0.
    rc, screen, err = pty_run(["status", "--watch", "--interval", "0.1"], env, tty="stdout",
                              until=lambda t: t.count("\x1b[H\x1b[2J") >= 3)
    assert rc == 0, err
    assert screen.count("\x1b[H\x1b[2J") >= 3 and screen.count("pattern-tracker status ") >= 3
    assert screen.startswith("\x1b[?25l") and screen.rstrip().endswith("\x1b[?25h")
    assert "Traceback" not in screen + err

    # --watch --json: one object per line; a bad interval is a usage error.
    rc, out, _ = pipe_run(["status", "--watch", "--json", "--interval", "0.1"], env, sig=signal.SIGTERM,
                          until=lambda t: t.count("\n") >= 2)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) >= 2 and all(json.loads(line)["circuit"]["state"] == "closed" for line in lines)
    assert ok("status", "--interval", "0", env=env, code=2).stderr.count("\n") == 1


# ---------------------------------------------------------------------------------------
# drain progress


def _seed(tracker_env: Path, n: int, prefix: str) -> None:
    from pattern_tracker import PatternTracker

    with PatternTracker() as t:
        for i in range(n):
            assert t.track_pattern_creation(f"v = {i}\n", {"file_path": f"/q/{prefix}{i}.py"}, deliver="none")["queued"]
        assert t.pattern_cache.size == n


def test_drain_shows_a_progress_bar_on_a_terminal_only(tracker_env: Path) -> None:
    env = cli_env(tracker_env)
    _seed(tracker_env, 5, "off")
    out = ok("drain", env=env)
    assert out.stdout.splitlines() == ["drain: delivered 5, already there 0, dead-lettered 0, left in spool 0 "
                                       + out.stdout.split("left in spool 0 ", 1)[1].strip()]
    assert out.stderr == ""  # off a tty: nothing but the summary

    _seed(tracker_env, 7, "on")
    rc, bar, stdout = pty_run(["drain"], env, tty="stderr")
    assert rc == 0
    assert "drain [" in bar and "7/7" in bar and "100%" in bar and "ev/s" in bar, repr(bar)
    assert stdout.startswith("drain: delivered 7, already there 0, dead-lettered 0, left in spool 0")

    # --json stays pure JSON on stdout, bar or not.
    _seed(tracker_env, 2, "js")
    rc, bar, stdout = pty_run(["drain", "--json"], env, tty="stderr")
    assert rc == 0 and json.loads(stdout)["delivered"] == 2 and "drain [" not in bar


def test_progress_bar_numbers() -> None:
    import io

    from pattern_tracker.cli.progress import Progress

    now = [0.0]
    buf = io.StringIO()
    bar = Progress(100, "drain", stream=buf, enabled=True, clock=lambda: now[0])
    for i in range(1, 5):
        now[0] = float(i)
        bar.update(10 * i)
    assert bar.rate == pytest.approx(10.0) and bar.eta == pytest.approx(6.0)
    assert "40/100" in bar.render() and "10.0 ev/s" in bar.render() and "ETA 6s" in bar.render()
    bar.update(120)  # more than the starting total (new events arrived): the total follows
    assert bar.total == 120 and "done" in bar.render()
    bar.finish("summary")
    assert buf.getvalue().endswith("\nsummary\n") and "\r" in buf.getvalue()
    quiet = io.StringIO()
    off = Progress(10, stream=quiet, enabled=False)
    off.update(5)
    off.finish("drain: done")
    assert quiet.getvalue() == "drain: done\n"


# ---------------------------------------------------------------------------------------
# logs


def test_json_logs_are_structured_and_hold_no_code_or_token(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", PATTERN_TRACKER__LOGGING__FORMAT="json", PATTERN_TRACKING_API_URL="http://127.0.0.1:9",
                  PATTERN_TRACKING_API_TOKEN=TOKEN, **FAST)
    secret_code = f"aws = '{AWS}'  # marker-code-body"
    out = run_cli("--debug", "run", "--source", "stdin", env=env,
                  input=changes(("/p/s.py", secret_code)) + b'{"file_path": "/p/bad.py", "code": 5}\n')
    assert out.returncode == 3, out.stderr
    records = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert "debug" in {r["level"] for r in records}, out.stderr  # --debug reaches the JSON handler
    for r in records:
        assert {"ts", "level", "logger", "msg", "pid"} <= r.keys() and r["logger"].startswith("pattern_tracker")
    for needle in (AWS, "marker-code-body", TOKEN):
        assert needle not in out.stderr + out.stdout

    from pattern_tracker.logs import scrub

    assert scrub(f"GET http://bob:pw123@h/x Authorization: Bearer {TOKEN}") == "GET http://bob:***@h/x Authorization: Bearer ***"


# ---------------------------------------------------------------------------------------
# the Python facade


def test_importing_the_package_stays_free() -> None:
    code = (
        "import sys, pattern_tracker\n"
        "from pattern_tracker import hook\n"
        "from pattern_tracker.state import ingest, spool\n"
        "heavy = [m for m in ('msgspec', 'reactivex', 'aiohttp', 'yaml', 'asyncio', 'opentelemetry') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert 'pattern_tracker.facade' not in sys.modules\n"
        "from pattern_tracker import PatternTracker\n"
        "assert PatternTracker.__module__ == 'pattern_tracker.facade'\n"
        "assert 'reactivex' not in sys.modules and 'msgspec' not in sys.modules\n"
        "try:\n    pattern_tracker.nope\nexcept AttributeError:\n    print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_facade_end_to_end(tracker_env: Path, tmp_path: Path) -> None:
    from pattern_tracker import PatternTracker
    from pattern_tracker.settings.config import ConfigError
    from pattern_tracker.state.spool import Spool
    from pattern_tracker.sinks.lineage_store import LineageStore

    path = str(tmp_path / "src" / "app.py")
    with PatternTracker() as t:
        r1 = t.track_pattern_creation("def f():\n    return 1\n", {"file_path": path, "session_id": "s1",
                                                                     "tool_name": "Write"}, deliver="none")
        assert (r1["queued"], r1["pattern_version"], r1["event_type"]) == (True, "1", "pattern_created")
        r2 = t.track_pattern_creation(f"def f():\n    key = '{AWS}'\n    return 2\n",
                                      {"file_path": path, "reason": "refactor", "language": "python"}, deliver="none")
        assert (r2["pattern_version"], r2["event_type"], r2["parent_pattern_ids"]) == ("2", "pattern_modified", [r1["pattern_id"]])
        # Redacted before it was stored: the spool holds no secret.
        spooled = [e.event for _, e in Spool(t.store).read_batch(0, 10)]
        assert [e.event_id for e in spooled] == [r1["event_id"], r2["event_id"]]
        assert AWS not in spooled[1].code and "[REDACTED:" in spooled[1].code
        # Unchanged content, deny-listed files: nothing queued, and why.
        again = t.track_pattern_creation(f"def f():\n    key = '{AWS}'\n    return 2\n", {"file_path": path})
        assert again["queued"] is False and again["reason"].startswith("unchanged") and again["pattern_version"] == "2"
        assert t.track_pattern_creation("X=1", {"file_path": str(tmp_path / ".env")})["reason"].startswith("denied")
        with pytest.raises(ValueError):
            t.track_pattern_creation("x", {"session_id": "no path"})
        # An unknown context key is an error naming it, not dropped without a word; nothing queued.
        with pytest.raises(ValueError, match=r"unknown key\(s\) 'sesion_id'.*did you mean 'session_id'"):
            t.track_pattern_creation("y = 1\n", {"file_path": path, "sesion_id": "s1"})
        with pytest.raises(ValueError, match="NUL"):
            t.track_pattern_creation("y = 1\n", {"file_path": path + "\0.py"})

        health = t.get_health_summary()
        assert health["cache_size"] == 2 and health["circuit_state"] == "closed" and health["api_available"] is True
        assert health["oldest_age"] is not None and health["last_delivery_at"] is None
        assert health["status"] in ("healthy", "degraded") and health["dead_letters"] == 0

        # Inline delivery: both versions reach the embedded lineage store, linked.
        r3 = t.track_pattern_creation("def f():\n    return 3\n", {"file_path": path}, deliver="inline")
        assert r3["drain"]["delivered"] == 3 and r3["drain"]["left_in_spool"] == 0 and r3["delivery"].startswith("settled")
        chain = LineageStore(t.store).query(path)
        assert [n["pattern_version"] for n in chain] == ["1", "2", "3"]
        assert chain[1]["parent_pattern_ids"] == [r1["pattern_id"]] and chain[2]["generation"] == 3
        assert AWS not in json.dumps(chain)

        metrics = t.get_error_metrics()
        assert metrics["total_requests"] >= 1 and metrics["failed_requests"] == 0 and metrics["success_rate"] == 1.0
        assert metrics["cached_events"] == 0 and metrics["events_delivered"] == 3
        assert metrics["average_response_time_ms"] is not None and metrics["retry_attempts"] == 0
        assert metrics["circuit_breaker_trips"] == 0 and metrics["response_time_p95_ms"] is not None
        health = t.get_health_summary(check_service=True)
        assert health["last_delivery_at"] is not None and health["service"]["available"] is True

        assert t.circuit_breaker.force_open() == "forced_open"
        assert t.circuit_breaker.state == "forced_open"
        forced = t.get_health_summary()
        assert forced["status"] == "unhealthy" and forced["api_available"] is False
        assert t.circuit_breaker.reset() == "closed" and t.circuit_breaker.failure_count == 0
        assert t.circuit_breaker.last_failure_time is None
        assert t.pattern_cache.cleanup() == 0 and t.pattern_cache.size == 0 and t.pattern_cache.hit_rate == 0.0

        name = t.record_metric("Review time (s)", 1.5, {"team": "core"})
        t.record_metric("Review time (s)", 0.5, {"team": "core"})
        assert name == "custom.Review_time_s.team_core"
        assert t.get_error_metrics()["custom_metrics"][name] == {"count": 2, "sum": 2.0, "mean": 1.0}
        with pytest.raises(ValueError):
            t.record_metric("x", -1)
        assert t.service_monitor.get_service_status()["available"] is True

    # Background delivery: a detached drainer, started like the hook starts one.
    with PatternTracker() as t:
        r = t.track_pattern_creation("def f():\n    return 4\n", {"file_path": path})
        assert r["delivery"] == "drainer started"
        wait_for(lambda: len(LineageStore(t.store).query(path)) == 4, timeout=20)

    bad = tmp_path / "bad.yaml"
    bad.write_text("resilience:\n  retry:\n    max_attempts: -1\n")
    with pytest.raises(ConfigError):
        PatternTracker(str(bad))


async def test_facade_async_against_serve_and_an_unreachable_service(tracker_env: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pattern_tracker import PatternTracker

    path = "/q/async.py"
    with serve(tmp_path / "service") as url:
        monkeypatch.setenv("PATTERN_TRACKING_API_URL", url)
        async with PatternTracker() as t:
            r1 = await t.atrack_pattern_creation("a = 1\n", {"file_path": path}, deliver="none")
            r2 = await t.atrack_pattern_creation("a = 2\n", {"file_path": path}, deliver="inline")
            assert r2["drain"]["delivered"] == 2 and r2["parent_pattern_ids"] == [r1["pattern_id"]]
            status = await t.service_monitor.aget_service_status()
            assert status["available"] is True and status["sink"] == "http"
            assert t.service_monitor.get_service_status()["available"] is True  # from inside a running loop
        query = urllib.parse.urlencode({"file_path": path})
        with urllib.request.urlopen(f"{url}/api/pattern-traceability/lineage/query?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        assert [p["pattern_version"] for p in body["data"]["patterns"]] == ["1", "2"], body

    monkeypatch.setenv("PATTERN_TRACKING_API_URL", "http://127.0.0.1:9")
    with PatternTracker() as t:
        status = t.service_monitor.get_service_status()
        assert status["available"] is False and status["status"] == "unreachable"


def test_close_shuts_the_trackers_telemetry_down(tracker_env: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracker's first drain builds its telemetry (here a Prometheus endpoint on 127.0.0.1).
    close() only "flushed" it, which did nothing: the endpoint went on serving after close, and
    spans still batched waited for the interpreter's exit. close() now shuts it down."""
    from tests.clitools import free_port

    from pattern_tracker import PatternTracker

    port = free_port()
    monkeypatch.setenv("PATTERN_TRACKER__TELEMETRY__PROMETHEUS_PORT", str(port))
    with serve(tmp_path / "service") as url:
        monkeypatch.setenv("PATTERN_TRACKING_API_URL", url)
        t = PatternTracker()
        t.track_pattern_creation("x = 1\n", {"file_path": str(tmp_path / "a.py")}, deliver="none")
        assert t.drain()["delivered"] == 1
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert "pattern_tracker_stage_events_in_total" in scraped
        t.close()
    with pytest.raises(OSError):  # refused: nothing listens any more
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
