"""The operations dashboard in real headless Chromium, over real processes.

* a real ``run`` (``--source stdin``, ``monitoring.status_port`` set) delivering to a real
  ``serve``; ``serve`` stops (an outage) and the page, never reloaded, shows the circuit open and
  the spool depth rising; ``serve`` starts again on the same port and the page shows the circuit
  closed and the spool back to 0;
* ``pattern-tracker dashboard`` over a data directory only hooks (and a failed drain) wrote to
  shows the numbers ``metrics --json`` reports; hostile file names and reasons render as text; the
  page is keyboard-usable and loads in well under a second; a busy port is one line and exit 2,
  SIGTERM exit 0.

Every page fails its test on a console error, an uncaught error or a dialog (tests/browser.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.browser import save_screenshot
from tests.clitools import (
    BIN,
    cli_env,
    dashboard,
    free_port,
    run_cli,
    serve,
    stop,
    wait_for,
)

HOSTILE_NAME = "<img src=x onerror=alert(1)>.py"
HOSTILE_CODE = "</script><script>alert(1)</script>"


def fast_resilience(**extra: str) -> dict[str, str]:
    """Small resilience settings: the circuit opens on the first failure and tries again after 1 s."""
    return {
        "PATTERN_TRACKER__RESILIENCE__CIRCUIT_BREAKER__FAILURE_THRESHOLD": "1",
        "PATTERN_TRACKER__RESILIENCE__CIRCUIT_BREAKER__RECOVERY_TIMEOUT": "1",
        "PATTERN_TRACKER__RESILIENCE__CIRCUIT_BREAKER__HALF_OPEN_ATTEMPTS": "1",
        "PATTERN_TRACKER__RESILIENCE__RETRY__BASE_DELAY": "0.05",
        "PATTERN_TRACKER__RESILIENCE__RETRY__MAX_ATTEMPTS": "2",
        "PATTERN_TRACKER__API__TIMEOUTS__CONNECT": "1",
        "PATTERN_TRACKER__API__TIMEOUTS__TOTAL": "2",
        **extra,
    }


def text(page: Any, selector: str) -> str:
    return (page.text_content(selector) or "").strip()


def wait_text(page: Any, selector: str, js_test: str, timeout: float = 20) -> None:
    """Wait in the page (no reload, no sleep) until ``js_test`` holds for the element's text ``t``."""
    # A function, not an expression: Playwright would eval() an expression, which the page's CSP forbids.
    page.wait_for_function(f"() => {{ const t = document.querySelector({json.dumps(selector)}).textContent.trim(); "
                           f"return {js_test}; }}", timeout=timeout * 1000)


def wait_live(page: Any) -> None:
    page.wait_for_function("() => document.getElementById('live').dataset.state === 'live'")


@contextmanager
def running(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``pattern-tracker run --source stdin`` fed by the test; stdin closed at the end: it exits 0."""
    proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
        assert proc.stdin is not None
        proc.stdin.close()
        code = proc.wait(30)
        assert code == 0, proc.stderr.read().decode() if proc.stderr else code
    finally:
        stop(proc)


def feed(proc: subprocess.Popen[bytes], first: int, n: int) -> None:
    assert proc.stdin is not None
    for i in range(first, first + n):
        proc.stdin.write(json.dumps({"file_path": f"/proj/m{i}.py", "code": f"value = {i}\n"}).encode() + b"\n")
    proc.stdin.flush()


def status_up(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
            return True
    except OSError as exc:
        return getattr(exc, "code", None) == 503  # unhealthy still answers


def test_the_page_follows_an_outage_of_the_service_and_its_recovery_without_a_reload(tmp_path: Path, page: Any) -> None:
    started = time.monotonic()
    service_port, status_port = free_port(), free_port()
    service_data = tmp_path / "service"
    with ExitStack() as stack:
        service = ExitStack()
        stack.callback(service.close)
        url = service.enter_context(serve(service_data, "--port", str(service_port)))
        env = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL=url, MONITORING_INTERVAL="0.5",
                      PATTERN_TRACKER__MONITORING__STATUS_PORT=str(status_port), **fast_resilience())
        run = stack.enter_context(running(env))
        wait_for(lambda: status_up(status_port), timeout=20, what="run's status port")
        page.goto(f"http://127.0.0.1:{status_port}/")  # / redirects to /ui/
        wait_live(page)
        page.evaluate("window.__notReloaded = true")
        feed(run, 0, 3)
        wait_text(page, "#hour-events", "t.startsWith('3 delivered')")
        assert text(page, "#circuit-state") == "closed" and text(page, "#spool-size") == "0"

        service.close()  # the outage: serve is gone; run keeps reading and holds the events in the spool
        feed(run, 3, 4)
        wait_text(page, "#circuit-state", "t === 'open'")
        wait_text(page, "#spool-size", "Number(t) >= 4")
        feed(run, 7, 6)
        wait_text(page, "#spool-size", "Number(t) >= 10")  # rising, seen live
        assert text(page, "#health-status") in ("degraded", "unhealthy")
        wait_text(page, "#cap-spool", "/at most (1[0-9]|[2-9][0-9])/.test(t)")  # the chart's data has the rise too
        save_screenshot(page, "dashboard-outage")

        # The service is back on the same port: the circuit closes and the backlog drains.
        stack.enter_context(serve(service_data, "--port", str(service_port)))
        wait_text(page, "#circuit-state", "t === 'closed'", timeout=30)
        wait_text(page, "#spool-size", "t === '0'", timeout=30)
        wait_text(page, "#hour-events", "t.startsWith('13 delivered')")
        wait_text(page, "#alerts-resolved tbody", "t.includes('circuit_open')")  # the incident, resolved
        assert page.evaluate("window.__notReloaded") is True
        assert page.evaluate("document.querySelectorAll('#chart-spool canvas').length") == 1
        save_screenshot(page, "dashboard")
    print(f"outage test: {time.monotonic() - started:.1f}s")


def hook_payload(path: Path, content: str) -> bytes:
    return json.dumps({"session_id": "s1", "hook_event_name": "PostToolUse", "tool_name": "Write",
                       "tool_use_id": f"toolu_{abs(hash(path.name))}",
                       "tool_input": {"file_path": str(path), "content": content},
                       "tool_response": {"success": True}}).encode()


def hostile_dead_letter(data: Path) -> None:
    """One dead letter whose file name and reason are markup (as a refused event could carry)."""
    from pattern_tracker.core.store import Store
    from pattern_tracker.model.events import PatternEvent
    from pattern_tracker.state.dead_letter import DeadLetter, DeadLetters

    store = Store.open(data)
    try:
        event = PatternEvent(event_id="e-hostile", event_type="pattern_created", pattern_id="p-hostile",
                             pattern_version="1", file_path=f"/proj/{HOSTILE_NAME}", code=HOSTILE_CODE)
        dead = DeadLetters(store)
        store.write(lambda txn: dead.put(txn, [DeadLetter(event=event, reason=f"HTTP 422 {HOSTILE_CODE}",
                                                          http_status=422, error_class="validation",
                                                          failed_at=time.time())]))
    finally:
        store.close()


def test_the_dashboard_command_shows_what_metrics_reports_over_a_data_dir_only_hooks_wrote(tmp_path: Path, page: Any) -> None:
    started = time.monotonic()
    data = tmp_path / "data"
    closed = free_port()  # nobody listens: every delivery call fails with a connection error
    env = cli_env(data, PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{closed}", PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false",
                  **fast_resilience(PATTERN_TRACKER__RESILIENCE__CIRCUIT_BREAKER__FAILURE_THRESHOLD="2",
                                    PATTERN_TRACKER__RESILIENCE__CIRCUIT_BREAKER__RECOVERY_TIMEOUT="300"))
    project = tmp_path / "proj"
    project.mkdir()
    for i in range(3):
        f = project / f"f{i}.py"
        f.write_text(f"v = {i}\n")
        out = run_cli("hook", env=env, input=hook_payload(f, f.read_text()))
        assert out.returncode == 0, out.stderr
    assert run_cli("drain", env=env).returncode == 4  # the service is unreachable: the events stay
    hostile_dead_letter(data)
    m = json.loads(run_cli("metrics", "--json", "--since", "3600", env=env).stdout)
    assert m["cached_events"] == 3 and m["circuit_state"] == "open" and m["failed_requests"] >= 1
    circuit = json.loads(run_cli("circuit", "status", "--json", env=env).stdout)

    port = free_port()
    with dashboard(env, "--port", str(port)) as (proc, url):
        assert url == f"http://127.0.0.1:{port}/ui/"
        page.goto(url)
        wait_live(page)
        load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        assert 0 < load_ms < 1000, load_ms  # the page with its scripts, styles and uPlot
        assert text(page, "#spool-size") == str(m["cached_events"])
        assert text(page, "#circuit-state") == m["circuit_state"]
        assert text(page, "#circuit-failures").startswith(f"{circuit['failure_count']} (it opens after 2 consecutive failures)")
        assert text(page, "#hour-requests").startswith(
            f"{m['total_requests']} ({m['successful_requests']} ok, {m['failed_requests']} failed)")
        assert text(page, "#hour-hooks") == str(m["hook"]["invocations"]) == "3"
        assert text(page, "#hour-events") == (f"{m['events']['delivered']} delivered, {m['events']['already_existed']} "
                                              f"already there, {m['events']['dead_lettered']} dead-lettered")
        assert text(page, "#dead-count").startswith(f"{m['dead_letter']['size']} (") and m["dead_letter"]["size"] == 1
        rows = page.eval_on_selector_all("#errors-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        assert rows == [[cls, str(e["count"]), str(e["last"]), str(e["previous"]), e["trend"]] for cls, e in sorted(m["errors"].items())]
        wait_text(page, "#health-service", "t.startsWith('unavailable')")  # probed through the configured sink
        assert text(page, "#health-status") == "unhealthy"  # no service while events wait
        # Hostile names render as text: no element injected, no dialog (the page fixture fails on one).
        cells = page.eval_on_selector_all("#dead-table tbody td", "tds => tds.map(td => td.textContent)")
        assert f"/proj/{HOSTILE_NAME}" in cells and f"HTTP 422 {HOSTILE_CODE}" in cells
        assert page.evaluate("document.querySelectorAll('main img, main script').length") == 0
        # Keyboard: the first Tab reaches the skip link, Enter moves to the panels.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to the panels"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        assert page.evaluate("document.getElementById('chart-spool').getAttribute('aria-label')").startswith("Spool depth now 3")

        # A second dashboard on the same port: one line, exit 2.
        busy = run_cli("dashboard", "--port", str(port), env=env, timeout=30)
        assert busy.returncode == 2, busy
        assert busy.stderr.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
        assert "already in use" in busy.stderr and "Traceback" not in busy.stderr
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        stopped = time.monotonic() - t0
    assert stopped < 5, stopped
    print(f"dashboard command test: {time.monotonic() - started:.1f}s (page loaded in {load_ms:.0f} ms, stopped in {stopped:.2f}s)")
