"""The resilience guide's Python API, run as the guide writes it.

The guide's snippets are pasted below character for character (the ``import`` line included),
strung together into one script with a few lines of our own (marked ``# test:``) that wait for
the deliveries and print figures to check. The script runs in a subprocess from a directory
outside the repository, against a real ``pattern-tracker serve``; the 100 tracked patterns must
all arrive there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pattern_tracker.facade import SpoolEntries
from tests.clitools import cli_env, serve, wait_for

# The guide, verbatim, one block per snippet.
GUIDE_IMPORT = """\
from pattern_tracker import PatternTracker
tracker = PatternTracker()
"""
GUIDE_HEALTH = """\
health = tracker.get_health_summary()
print(f"Status: {health['status']}")
print(f"API Available: {health['api_available']}")
print(f"Cache Size: {health['cache_size']}")
"""
GUIDE_METRICS = """\
metrics = tracker.get_error_metrics()
print(f"Total Requests: {metrics['total_requests']}")
print(f"Success Rate: {metrics['successful_requests'] / max(metrics['total_requests'], 1):.2%}")
print(f"Circuit Breaker Trips: {metrics['circuit_breaker_trips']}")
print(f"Cached Events: {metrics['cached_events']}")
print(f"Average Response Time: {metrics['avg_response_time']:.2f}s")
"""
GUIDE_SERVICE = """\
status = tracker.service_monitor.get_service_status()
"""
GUIDE_CIRCUIT = """\
print(f"Circuit breaker state: {tracker.circuit_breaker.state}")
print(f"Failure count: {tracker.circuit_breaker.failure_count}")
print(f"Last failure: {tracker.circuit_breaker.last_failure_time}")
tracker.circuit_breaker.reset()
"""
GUIDE_CACHE = """\
tracker.pattern_cache.clear()
tracker.pattern_cache.cleanup()
print(f"Cache hit rate: {tracker.pattern_cache.hit_rate:.2%}")
print(f"Cache size: {len(tracker.pattern_cache.cache)}")
"""
GUIDE_TRACK = """\
for i in range(100):
    tracker.track_pattern_creation(code=f"def test_function_{i}(): pass", context={"file_path": f"test_{i}.py"})
"""
GUIDE_DEBUG = """\
tracker = PatternTracker(debug=True)
"""
GUIDE_CONFIG = """\
tracker = PatternTracker(config_path="new_config.yaml")
"""

# Before any request (avg_response_time must format with :.2f then too), track, wait, look again.
SCRIPT = "".join([
    "import json, time  # test:\n",
    GUIDE_IMPORT,
    "print('== before')  # test:\n",
    GUIDE_HEALTH,
    GUIDE_METRICS,
    "print('THRESHOLD', tracker.config.monitoring.alerting.threshold)  # test: the guide's default\n",
    GUIDE_TRACK,
    "deadline = time.monotonic() + 90  # test: the background drainers empty the spool\n",
    "while len(tracker.pattern_cache.cache) and time.monotonic() < deadline:  # test:\n",
    "    time.sleep(0.05)  # test:\n",
    "print('== after')  # test:\n",
    GUIDE_HEALTH,
    GUIDE_METRICS,
    "print('RAW', json.dumps({k: metrics[k] for k in ('avg_response_time', 'total_requests')}))  # test:\n",
    GUIDE_SERVICE,
    "print('SERVICE', json.dumps([status['available'], status['sink']]))  # test:\n",
    GUIDE_CIRCUIT,
    GUIDE_CACHE,
    GUIDE_DEBUG,
    "print('DEBUG', tracker.debug)  # test:\n",
    GUIDE_CONFIG,
    "print('CONFIG', tracker.config.monitoring.alerting.threshold, tracker.config.pattern_tracking.batch_size)  # test:\n",
])


def section(out: str, name: str) -> dict[str, str]:
    """``Label: value`` lines of one ``== name`` section of the script's output."""
    body = out.split(f"== {name}\n", 1)[1].split("\n== ", 1)[0]
    return dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)


def service_nodes(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/pattern-traceability/lineage/query?limit=1000", timeout=10) as resp:
        return json.loads(resp.read())["data"]["patterns"]


def test_the_guides_snippets_run_verbatim_against_serve(tmp_path: Path) -> None:
    cwd = tmp_path / "project"  # outside the repository: the import must come from the install
    cwd.mkdir()
    data = tmp_path / "client"
    with serve(tmp_path / "service") as url:
        (cwd / "new_config.yaml").write_text(
            f"api:\n  url: {url}\nstorage:\n  data_dir: {data}\n"
            "pattern_tracking:\n  batch_size: 10\nmonitoring:\n  alerting:\n    threshold: 0.5\n")
        env = cli_env(data, PATTERN_TRACKING_API_URL=url)
        (cwd / "guide.py").write_text(SCRIPT)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "guide.py"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        out = proc.stdout

        # Every tracked pattern reached the service (the tracker's paths are relative to its cwd).
        expected = {str(cwd / f"test_{i}.py") for i in range(100)}

        def arrived() -> bool:
            return expected <= {n["file_path"] for n in service_nodes(url)}

        wait_for(arrived, timeout=30, interval=0.2)
        nodes = [n for n in service_nodes(url) if n["file_path"] in expected]
        assert len(nodes) == 100 and {n["pattern_version"] for n in nodes} == {"1"}
        elapsed = time.monotonic() - started

    for block in (GUIDE_IMPORT, GUIDE_HEALTH, GUIDE_METRICS, GUIDE_SERVICE, GUIDE_CIRCUIT, GUIDE_CACHE, GUIDE_TRACK,
                  GUIDE_DEBUG, GUIDE_CONFIG):
        assert block in SCRIPT  # the guide's text, unchanged

    before, after = section(out, "before"), section(out, "after")
    assert before["Status"] == "healthy" and before["API Available"] == "True" and before["Cache Size"] == "0"
    assert before["Total Requests"] == "0" and before["Success Rate"] == "0.00%"
    assert before["Average Response Time"] == "0.00s" and before["Cached Events"] == "0"
    assert "THRESHOLD 0.8\n" in out  # ALERTING_THRESHOLD's default, as the guide states

    raw = json.loads(re.search(r"^RAW (.*)$", out, re.M).group(1))
    assert raw["total_requests"] >= 1 and raw["avg_response_time"] > 0, raw  # measured, in seconds
    assert raw["avg_response_time"] < 30, raw  # seconds, not milliseconds
    assert after["Total Requests"] == str(raw["total_requests"]) and after["Success Rate"] == "100.00%"
    assert after["Average Response Time"] == f"{raw['avg_response_time']:.2f}s"
    assert after["Cached Events"] == "0" and after["Cache Size"] == "0" and after["Status"] == "healthy"
    assert after["Circuit Breaker Trips"] == "0" and after["API Available"] == "True"
    assert "SERVICE [true, \"http\"]\n" in out
    assert after["Circuit breaker state"] == "closed" and after["Failure count"] == "0"
    assert after["Last failure"] == "None"
    assert after["Cache hit rate"] == "0.00%" and after["Cache size"] == "0"
    assert "DEBUG True\n" in out
    assert "CONFIG 0.5 10\n" in out  # new_config.yaml was read
    assert elapsed < 150, elapsed


def test_pattern_cache_cache_is_a_live_view_of_the_spool(tracker_env: Path, tmp_path: Path) -> None:
    """``len()`` without a scan, ids oldest first across pages, ``in`` and ``[]`` by event id."""
    from pattern_tracker import PatternTracker

    n = SpoolEntries.PAGE + 44  # more than one page
    with PatternTracker() as t:
        ids = [t.track_pattern_creation(f"x = {i}\n", {"file_path": str(tmp_path / f"m{i}.py")}, deliver="none")["event_id"]
               for i in range(n)]
        cache = t.pattern_cache.cache
        assert len(cache) == n == t.pattern_cache.size
        assert list(cache) == ids
        assert ids[7] in cache and "no-such-event" not in cache and 7 not in cache
        assert cache[ids[7]].file_path == str(tmp_path / "m7.py") and cache[ids[7]].code == "x = 7\n"
        with pytest.raises(KeyError):
            cache["no-such-event"]
        assert t.get_error_metrics()["avg_response_time"] == 0.0  # no call yet: 0.0, not None

        assert t.drain()["left_in_spool"] == 0
        assert len(cache) == 0 and list(cache) == [] and ids[7] not in cache  # live: the view follows the spool
        m = t.get_error_metrics()
        assert m["total_requests"] >= 1 and m["avg_response_time"] > 0
        assert m["avg_response_time"] == round(m["average_response_time_ms"] / 1000, 6)


def test_mean_latency_keeps_sub_millisecond_calls() -> None:
    """Calls under 0.5 ms round to 0 ms each: the mean comes from the µs sum when every call has it."""
    from pattern_tracker.core import metrics

    counts: dict[str, int] = {}
    metrics.observe(counts, "delivery", [0.0002, 0.0004])
    assert counts["hist.delivery.sum_ms"] == 0
    assert metrics.histogram(counts, "delivery")["mean_ms"] == 0.3
    older = {k: v for k, v in counts.items() if not k.endswith("_us")}  # buckets written before the µs sum
    metrics.observe(older, "delivery", [0.002])
    assert metrics.histogram(older, "delivery")["mean_ms"] == 2 / 3  # the ms sum, not a partial µs one
