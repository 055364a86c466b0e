"""Long versions of tests/test_reliability.py (`make soak`): the same scenarios
(tests/reliability_scenarios.py), large."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import reliability_scenarios as r
from tests.clitools import BIN, run_cli
from tests.spool_scenarios import balanced

def long(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.timeout(3600)
def test_soak_kill_9_three_times_during_replay_of_100k(tmp_path: Path) -> None:
    result = r.crash_replay_scenario(tmp_path, events=100_000, files=5000, kills=3, seed=7, timeout=1800)
    assert result["final"]["already_existed"] >= result["killed_at"][-1] > 0


def _long_schedule(cycles: int) -> str:
    """The quick schedule's phases ``cycles`` times over (then a healthy service)."""
    head, phases = r.CHAOS_SCHEDULE.split("phases:\n", 1)
    return head + "phases:\n" + phases * cycles


@pytest.mark.timeout(3600)
def test_soak_chaos_20k_events_through_every_fault(tmp_path: Path) -> None:
    cycles = 6  # 6 × 6.25 s of faults
    result = r.chaos_scenario(tmp_path, events=20_000, files=1000, feed_seconds=6.25 * cycles,
                              schedule=_long_schedule(cycles), drain_deadline=900)
    assert result["metrics"]["failed_requests"] > 0


@pytest.mark.timeout(3600)
def test_soak_hook_fuzz(tmp_path: Path) -> None:
    r.hook_fuzz_scenario(tmp_path, examples=3000, subprocess_samples=30)


@pytest.mark.timeout(3600)
@long(20_000)
@given(r.records)
def test_soak_parse_record_fuzz(obj: Any) -> None:
    r.check_parse_record(obj)


@pytest.mark.timeout(3600)
@long(40)
@given(r.stdin_plans)
def test_soak_stdin_cli_fuzz(plan: list[tuple[bool, bytes]]) -> None:
    r.check_stdin_cli(plan)


@pytest.mark.timeout(3600)
@long(3000)
@given(st.lists(r.answers(), max_size=16), st.integers(1, 25), st.booleans())
def test_soak_http_sink_fuzz(script: list[r.Answer], n: int, use_batch: bool) -> None:
    r.check_http_answers(script, n, use_batch)


@pytest.mark.timeout(3600)
def test_soak_twenty_concurrent_hooks_at_the_map_limit(tmp_path: Path) -> None:
    """A store at storage.max_map_size: concurrent hooks each exit 0 with one log line; nothing
    queued before is lost or unreadable; the store verifies."""
    data = tmp_path / "d"
    env = r.map_env(data, 1, 2)
    first = run_cli("run", "--source", "stdin", env=env, input=r.record_lines(8, 60_000, "/soak/a"))
    assert first.returncode == 0, first.stderr
    queued = r.readable_spool(data)
    procs = []
    for i in range(20):
        doc = {"tool_name": "Write", "tool_input": {"file_path": str(tmp_path / f"big{i}.py"),
                                                    "content": f"# {i}\n" + "y = 2\n" * 300_000}}
        p = subprocess.Popen([str(BIN), "hook"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        procs.append((p, json.dumps(doc).encode()))
    for p, body in procs:
        out, err = p.communicate(body, timeout=120)
        assert p.returncode == 0 and out == b"" and err == b""
    lines = (data / "hook.log").read_text().rstrip("\n").split("\n")
    assert len(lines) == 20 and all("is full" in line for line in lines), lines
    assert r.readable_spool(data) == queued and r.verify_in_subprocess(data) == []


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_soak_overflow_with_5000_events(tmp_path: Path, policy: str) -> None:
    data = tmp_path / "d"
    env = r.map_env(data, 1, 64, PATTERN_TRACKING_CACHE_SIZE="50",
                    PATTERN_TRACKER__PATTERN_TRACKING__OVERFLOW_POLICY=policy)
    out = run_cli("run", "--source", "stdin", env=env, input=r.record_lines(5000, 200, "/soak/o"), timeout=600)
    assert out.returncode == 0, out.stderr
    stats = r.cli_json("cache", "stats", env=env)
    assert stats["size"] == 50 and stats["dropped"] >= 4950, stats
    assert balanced(stats), stats
    assert len(r.readable_spool(data)) == 50 and r.verify_in_subprocess(data) == []
