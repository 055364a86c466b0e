"""Health, error metrics and alerting (pipeline/usecases/health.py, alerting.py, monitor_cli.py,
status_server.py): the pure rules, then the real CLI and servers over a real store."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from pattern_tracker.usecases.alerting import Alerter, AlertRules, Incident, evaluate, load_states
from pattern_tracker.composition import breaker_for
from pattern_tracker.settings.config import load_config
from pattern_tracker.core.counters import Counters
from pattern_tracker.usecases.health import Rules, Snapshot, assess, error_trends
from pattern_tracker.web.status_server import StatusServer
from tests.clitools import BIN, async_wait_for, cli_env, free_port, run_cli, stop, wait_for

NOW = 1_800_000_000.0


def snap(**kw: Any) -> Snapshot:
    base: dict[str, Any] = dict(now=NOW, data_dir="/d", window_seconds=60.0, api_available=True, api_status="healthy",
                                spool_bound=100)
    base.update(kw)
    return Snapshot(**base)


# ---------------------------------------------------------------------------------------
# Health rules


@pytest.mark.parametrize(
    ("kw", "status", "checks"),
    [
        ({}, "healthy", []),
        ({"api_available": None}, "healthy", []),  # not asked
        ({"circuit": "forced_open"}, "unhealthy", ["circuit"]),
        ({"spool_size": 100}, "unhealthy", ["spool"]),
        ({"api_available": False, "api_status": "unreachable", "spool_size": 1, "spool_oldest_age": 1.0},
         "unhealthy", ["service"]),
        ({"api_available": False, "api_status": "unreachable", "circuit": "open"}, "unhealthy", ["circuit", "service"]),
        ({"api_available": False, "api_status": "unhealthy"}, "degraded", ["service"]),
        ({"circuit": "open", "circuit_failure_count": 5}, "degraded", ["circuit"]),
        ({"circuit": "half_open"}, "degraded", ["circuit"]),
        ({"circuit": "disabled"}, "healthy", []),
        ({"spool_size": 80}, "healthy", []),
        ({"spool_size": 81}, "degraded", ["spool"]),
        ({"requests": 5, "succeeded": 4, "failed": 1}, "degraded", ["success_rate"]),  # 80% < 95%
        ({"requests": 4, "succeeded": 0, "failed": 4}, "healthy", []),  # too few calls to judge
        ({"requests": 20, "succeeded": 19, "failed": 1}, "healthy", []),  # 95% is not below 95%
        ({"dead_letters": 1}, "degraded", ["dead_letters"]),
        ({"spool_size": 1, "spool_oldest_age": 301.0}, "degraded", ["spool_age"]),
        ({"spool_size": 1, "spool_oldest_age": 299.0}, "healthy", []),
    ],
)
def test_health_rules(kw: dict[str, Any], status: str, checks: list[str]) -> None:
    h = assess(snap(**kw), Rules(success_threshold=0.95))
    assert h.status == status, h.reasons
    assert [r.check for r in h.reasons] == checks
    assert h.exit_code == {"healthy": 0, "degraded": 1, "unhealthy": 2}[status]


# ---------------------------------------------------------------------------------------
# Alert rules: evaluate() is pure


def test_evaluate_fires_once_holds_quietly_and_resolves_once() -> None:
    rules = AlertRules(threshold=0.9)
    states: dict[str, Incident] = {}
    states, notes = evaluate(snap(), states, NOW, rules)
    assert states == {} and notes == []

    bad = snap(circuit="open", circuit_trip_count=1, requests=10, succeeded=2, failed=8)
    states, notes = evaluate(bad, states, NOW + 1, rules)
    assert sorted(n["alert"] for n in notes) == ["circuit_open", "success_rate"]
    by = {n["alert"]: n for n in notes}
    rate = by["success_rate"]
    assert set(rate) == {"alert", "status", "severity", "message", "value", "threshold", "started_at", "resolved_at",
                         "service", "data_dir"}
    assert rate["status"] == "firing" and rate["value"] == 0.2 and rate["threshold"] == 0.9
    assert rate["severity"] == "warning" and rate["service"] == "pattern-tracker" and rate["data_dir"] == "/d"
    assert rate["resolved_at"] is None and rate["started_at"].endswith("Z")
    assert by["circuit_open"]["severity"] == "critical" and by["circuit_open"]["value"] == "open"

    # While it holds — across a "restart" too, since the states are all there is — nothing is repeated.
    for t in range(2, 6):
        states, notes = evaluate(bad, msgspec.json.decode(msgspec.json.encode(states), type=dict[str, Incident]),
                                 NOW + t, rules)
        assert notes == []
    # Half-open keeps the circuit incident; the success rate recovered.
    states, notes = evaluate(snap(circuit="half_open", requests=10, succeeded=10), states, NOW + 10, rules)
    assert [(n["alert"], n["status"]) for n in notes] == [("success_rate", "resolved")]
    assert notes[0]["resolved_at"] is not None and notes[0]["started_at"] == rate["started_at"]
    states, notes = evaluate(snap(), states, NOW + 11, rules)
    assert [(n["alert"], n["status"]) for n in notes] == [("circuit_open", "resolved")]
    assert states == {}
    # Half-open alone does not start an incident.
    assert evaluate(snap(circuit="half_open"), {}, NOW + 12, rules) == ({}, [])


def test_evaluate_thresholds() -> None:
    rules = AlertRules(threshold=0.95, min_requests=5)
    fired = lambda **kw: [n["alert"] for n in evaluate(snap(**kw), {}, NOW, rules)[1]]  # noqa: E731
    assert fired(requests=4, succeeded=0, failed=4) == []
    assert fired(requests=5, succeeded=4, failed=1) == ["success_rate"]
    assert fired(requests=20, succeeded=19, failed=1) == []
    assert fired(circuit="forced_open") == ["circuit_open"]
    assert fired(spool_size=80) == [] and fired(spool_size=81) == ["spool_high"]
    assert fired(dead_letters=3) == ["dead_letters"]
    states, _ = evaluate(snap(dead_letters=3), {}, NOW, rules)
    assert evaluate(snap(dead_letters=7), states, NOW + 1, rules)[1] == []  # more letters: same incident
    assert [n["status"] for n in evaluate(snap(), states, NOW + 2, rules)[1]] == ["resolved"]


def test_error_trend_compares_the_last_five_minutes_with_the_five_before(store) -> None:
    c = Counters(store)
    now = 600 * 60 + 30.0  # mid-minute
    c.bump({"requests.failed.timeout": 2, "requests.failed.http_503": 5}, now - 7 * 60)  # previous interval
    c.bump({"requests.failed.timeout": 4, "requests.failed.http_503": 1, "requests.failed.connection": 3}, now - 60)
    c.bump({"requests.failed.validation": 1}, now - 7 * 60)
    c.bump({"requests.failed.validation": 1}, now)
    c.bump({"requests.failed.old": 9}, now - 30 * 60)  # outside both intervals
    t = error_trends(c, now)
    assert t == {
        "connection": {"last": 3, "previous": 0, "trend": "rising"},
        "http_503": {"last": 1, "previous": 5, "trend": "falling"},
        "timeout": {"last": 4, "previous": 2, "trend": "rising"},
        "validation": {"last": 1, "previous": 1, "trend": "flat"},
    }


# ---------------------------------------------------------------------------------------
# Through the real CLI


class Faults:
    """A fault hook for the in-process `serve` app: counts POSTs, fails on demand.

    mode None: normal; "posts": POSTs answer 503 (the health body still says healthy);
    "down": POSTs answer 503 and the health body says the lineage tracker is broken (HTTP 200)."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.posts = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse | None:
        if request.method == "POST":
            self.posts += 1
            if self.mode in ("posts", "down"):
                return web.json_response({"detail": "Database connection not available"}, status=503)
        elif request.path.endswith("/health") and self.mode == "down":
            return web.json_response({"status": "unhealthy", "components": {"lineage_tracker": "error: db down"}})
        return None


def write_payload(path: Path, content: str) -> bytes:
    return json.dumps({"session_id": "s1", "hook_event_name": "PostToolUse", "tool_name": "Write",
                       "tool_use_id": f"toolu_{path.stem}", "tool_input": {"file_path": str(path), "content": content},
                       "tool_response": {"success": True}}).encode()


async def cli(*args: str, env: dict[str, str], input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env, input=input)


async def health(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    out = await cli("health", "--json", env=env)
    return out.returncode, json.loads(out.stdout)


async def test_health_follows_the_service_down_and_back_with_exit_codes(tmp_path: Path, serve_factory) -> None:
    faults = Faults()
    url = await serve_factory(fault_hook=faults)
    env = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL=url, PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false",
                  CIRCUIT_BREAKER_FAILURE_THRESHOLD="2", CIRCUIT_BREAKER_RECOVERY_TIMEOUT="1",
                  PATTERN_TRACKER__RESILIENCE__RETRY__MAX_ATTEMPTS="1", PATTERN_TRACKER__API__MAX_CONCURRENCY="1",
                  PATTERN_TRACKER__PATTERN_TRACKING__BATCH_SIZE="1", ALERTING_THRESHOLD="0.3")

    code, doc = await health(env)
    assert (code, doc["status"], doc["api_available"], doc["reasons"]) == (0, "healthy", True, []), doc
    text = await cli("health", env=env)
    assert text.returncode == 0 and text.stdout.startswith("pattern-tracker: HEALTHY")

    # The service takes writes badly but says it is fine: 3 hooks, a drain opens the circuit → degraded.
    for i in range(3):
        f = tmp_path / f"m{i}.py"
        f.write_text(f"x = {i}\n")
        assert (await cli("hook", env=env, input=write_payload(f, f"x = {i}\n"))).returncode == 0
    faults.mode = "posts"
    drain = await cli("drain", env=env)
    assert drain.returncode == 4, drain.stdout + drain.stderr
    code, doc = await health(env)
    assert (code, doc["status"], doc["api_available"], doc["circuit"]["state"]) == (1, "degraded", True, "open"), doc
    assert "circuit" in [r["check"] for r in doc["reasons"]] and doc["spool"]["size"] == 3

    # Its health body now says the lineage tracker is broken (HTTP 200 all the same) → unhealthy.
    faults.mode = "down"
    code, doc = await health(env)
    assert (code, doc["status"], doc["api_available"], doc["service"]["status"]) == (2, "unhealthy", False, "unhealthy")
    text = await cli("health", env=env)
    assert text.returncode == 2 and "UNHEALTHY" in text.stdout and "3 event(s) are waiting" in text.stdout
    m = json.loads((await cli("metrics", "--json", env=env)).stdout)
    failed = m["failed_requests"]
    assert failed >= 2 and m["successful_requests"] == 0 and m["errors"]["http_503"]["count"] == failed
    assert m["errors"]["http_503"]["trend"] == "rising" and m["circuit_breaker_trips"] >= 1

    # Back: after the recovery timeout a drain delivers the backlog and closes the circuit → healthy.
    faults.mode = None
    retry_at = json.loads((await cli("circuit", "status", "--json", env=env)).stdout)["retry_at"]
    await async_wait_for(lambda: time.time() >= retry_at, what="the circuit's own next trial time")
    drain = await cli("drain", "--json", env=env)
    assert drain.returncode == 0 and json.loads(drain.stdout)["delivered"] == 3, drain.stdout + drain.stderr
    code, doc = await health(env)
    assert (code, doc["status"], doc["circuit"]["state"], doc["spool"]["size"]) == (0, "healthy", "closed", 0), doc
    assert doc["last_delivery_at"] is not None and doc["window"]["successful"] == 3
    assert doc["window"]["failed"] == failed


def test_health_says_connection_refused_at_host_port_not_aiohttp_noise(tmp_path: Path) -> None:
    port = free_port()  # a loopback port nobody listens on
    env = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{port}")
    out = run_cli("health", env=env)
    assert out.returncode == 1 and "DEGRADED" in out.stdout, out.stdout + out.stderr
    assert f"connection refused at 127.0.0.1:{port}" in out.stdout
    doc = json.loads(run_cli("health", "--json", env=env).stdout)
    assert doc["service"]["detail"] == f"connection refused at 127.0.0.1:{port}"
    for noise in ("ssl:default", "Connect call failed", "ClientConnectorError", "Cannot connect to host"):
        assert noise not in out.stdout + out.stderr


async def test_metrics_from_ten_hook_processes_and_a_drainer_add_up(tmp_path: Path, serve_factory) -> None:
    faults = Faults()
    url = await serve_factory(fault_hook=faults)
    env = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL=url, PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false")
    files = []
    for i in range(10):
        f = tmp_path / f"f{i}.py"
        f.write_text(f"token = 'ghp_{'a' * 36}'\n" if i == 0 else f"v = {i}\n")
        files.append(f)
    outs = await asyncio.gather(*(cli("hook", env=env, input=write_payload(f, f.read_text())) for f in files))
    assert [o.returncode for o in outs] == [0] * 10
    drain = await cli("drain", "--json", env=env)
    assert drain.returncode == 0 and json.loads(drain.stdout)["delivered"] == 10, drain.stdout + drain.stderr

    out = await cli("metrics", "--json", env=env)
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)
    calls = faults.posts
    assert calls >= 1
    assert m["hook"]["invocations"] == 10
    assert m["spool"]["entered"] == 10 and m["spool"]["acked"] == 10 and m["cached_events"] == 0
    assert m["events"] == {"delivered": 10, "already_existed": 0, "dead_lettered": 0}
    assert (m["total_requests"], m["successful_requests"], m["failed_requests"]) == (calls, calls, 0)
    assert m["success_rate"] == 1.0 and m["errors"] == {}
    assert m["retries"] == {"successful_without_retry": 10, "successful_with_retry": 0, "failed_without_retry": 0,
                            "failed_with_retry": 0}
    assert m["retry_attempts"] == 0 and m["circuit_breaker_trips"] == 0
    assert m["response_time_ms"]["count"] == calls and m["response_time_ms"]["p99_ms"] is not None
    assert m["end_to_end_latency_ms"]["count"] == 10
    assert m["redactions"].get("github_token", sum(m["redactions"].values())) >= 1
    assert m["dead_letter"]["size"] == 0 and m["last_delivery_at"] is not None
    # The same over a short window; a bad window is a usage error.
    short = json.loads((await cli("metrics", "--json", "--since", "300", env=env)).stdout)
    assert (short["total_requests"], short["hook"]["invocations"]) == (calls, 10)
    text = await cli("metrics", env=env)
    assert text.returncode == 0 and f"{calls} total, {calls} successful, 0 failed" in text.stdout
    assert "10 invocation(s)" in text.stdout
    bad = await cli("metrics", "--since", "0", env=env)
    assert bad.returncode == 2 and "--since" in bad.stderr


# ---------------------------------------------------------------------------------------
# Alerter → webhook, and the status server


def config(store, **env: str) -> Any:
    return load_config(env={"PATTERN_TRACKER_DATA_DIR": str(store.path), **env}).config


async def test_alert_fires_once_and_resolves_once_through_a_webhook_even_across_a_restart(store, caplog) -> None:
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hooks/s3cr3t-path", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    cfg = config(store, MONITORING_INTERVAL="0.05", PATTERN_TRACKER__MONITORING__ALERTING__CHANNELS="webhook,log",
                 PATTERN_TRACKER__MONITORING__ALERTING__WEBHOOK_URL=f"http://{host}:{port}/hooks/s3cr3t-path")
    breaker = breaker_for(cfg, store)

    async def run_alerter(evaluations: int, until: Any = lambda: True, what: str = "alerter") -> None:
        """The real alerter loop, stopped once it has evaluated ``evaluations`` times and ``until()``
        holds: a count of evaluations, not a guessed duration, is what makes "nothing was sent" mean
        something. The count wraps the real tick (which reads, decides and sends)."""
        alerter = Alerter(cfg, store)
        done = 0
        real_tick = alerter.tick

        async def counted_tick() -> list[dict[str, Any]]:
            nonlocal done
            notes = await real_tick()
            done += 1
            return notes

        alerter.tick = counted_tick  # type: ignore[method-assign]
        stop_ev = asyncio.Event()
        task = asyncio.create_task(alerter.run(stop_ev))
        try:
            await async_wait_for(lambda: done >= evaluations and until(), what=f"{what}, {evaluations} evaluations")
        finally:
            stop_ev.set()
            await asyncio.wait_for(task, 5)

    try:
        caplog.set_level(logging.INFO, logger="pattern_tracker")
        await run_alerter(5)
        assert received == []
        breaker.force_open()
        await run_alerter(10, lambda: received, "the firing alert")  # ~10 evaluations while the circuit is open
        assert [(r["alert"], r["status"]) for r in received] == [("circuit_open", "firing")]
        await run_alerter(5)  # a restart: the incident is in the store, nothing is sent again
        assert len(received) == 1 and set(load_states(store)) == {"circuit_open"}
        breaker.reset()
        await run_alerter(5, lambda: len(received) >= 2, "the resolved alert")
        assert [(r["alert"], r["status"]) for r in received] == [("circuit_open", "firing"), ("circuit_open", "resolved")]
        fired, resolved = received
        assert fired["severity"] == "critical" and fired["value"] == "forced_open" and fired["resolved_at"] is None
        assert resolved["started_at"] == fired["started_at"] and resolved["resolved_at"] is not None
        assert fired["service"] == "pattern-tracker" and fired["data_dir"] == str(store.path)
        assert load_states(store) == {}
        alerts = [r for r in caplog.records if r.name == "pattern_tracker.alerts"]
        assert [r.levelname for r in alerts] == ["ERROR", "INFO"]
    finally:
        await runner.cleanup()

    # The receiver is gone: the failure is logged (without the URL, a secret) and nothing raises.
    caplog.clear()
    breaker.force_open()
    await run_alerter(1)  # the evaluation that fires has tried (and failed) to send
    warnings = [r.getMessage() for r in caplog.records if r.name == "pattern_tracker.usecases.health"]
    assert any("alert webhook failed for circuit_open firing" in w for w in warnings), warnings
    assert not any("s3cr3t" in r.getMessage() or str(port) in r.getMessage() for r in caplog.records)


async def test_status_server_answers_health_and_metrics(store) -> None:
    cfg = config(store)
    server = StatusServer(cfg, store, port=0)
    base = await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/health") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "healthy"
            breaker_for(cfg, store).force_open()
            async with session.get(f"{base}/health") as resp:
                doc = await resp.json()
                assert resp.status == 503 and doc["status"] == "unhealthy" and doc["circuit"]["state"] == "forced_open"
            async with session.get(f"{base}/metrics.json") as resp:
                m = await resp.json()
                assert resp.status == 200 and m["circuit_breaker_trips"] == 1 and m["total_requests"] == 0
    finally:
        await server.stop()


def test_run_serves_status_and_alerts_on_the_console(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = cli_env(data, PATTERN_TRACKER__MONITORING__STATUS_PORT=str(port), MONITORING_INTERVAL="0.2",
                  PATTERN_TRACKER__MONITORING__ALERTING__CHANNELS="console")
    assert run_cli("circuit", "open", env=env).returncode == 0
    proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # stderr is read as it comes, so the test can wait for the alert lines themselves.
    lines: list[bytes] = []
    assert proc.stderr is not None

    def read() -> None:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, b""):
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def err_text() -> str:
        return b"".join(list(lines)).decode()

    try:
        def get() -> tuple[int, dict[str, Any]] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())
            except OSError:
                return None

        status, doc = wait_for(get, timeout=15)
        assert status == 503 and doc["status"] == "unhealthy" and doc["circuit"]["state"] == "forced_open"
        assert run_cli("circuit", "reset", env=env).returncode == 0
        wait_for(lambda: (get() or (0,))[0] == 200, timeout=10)
        # An evaluation sees the circuit closed: its console line, not a guessed delay.
        wait_for(lambda: "alert RESOLVED circuit_open" in err_text(), what="the RESOLVED alert on the console")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        code = proc.wait(20) if proc.poll() is None else proc.returncode
        if code is None:
            stop(proc)
        reader.join(10)
    err = err_text()
    assert code == 0, err
    assert err.count("alert FIRING circuit_open") == 1 and err.count("alert RESOLVED circuit_open") == 1, err
