"""Reliability suite, quick versions (docs/reliability.md; the long ones: `make soak`).

1. crash: `replay ARCHIVE` to `serve`, SIGKILLed three times at seeded random points and restarted;
2. chaos: `run --source stdin` against `serve --chaos` (every fault type), drained until empty;
3. fuzzing: hook stdin, stdin JSON lines, the service's answers to HttpSink;
4. disk pressure: a tiny LMDB map (growth, then one clear error) and a tiny spool bound (counted drops).

The scenarios live in tests/reliability_scenarios.py as functions taking their sizes, so
tests/soak/ runs the same code with large ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.clitools import run_cli
from tests.spool_scenarios import balanced
from tests.reliability_scenarios import (
    Answer,
    answers,
    chaos_scenario,
    check_http_answers,
    check_parse_record,
    check_stdin_cli,
    cli_json,
    crash_replay_scenario,
    hook_fuzz_scenario,
    map_env,
    readable_spool,
    record_lines,
    records,
    stdin_plans,
    verify_in_subprocess,
)


# ---------------------------------------------------------------------------------------------
# 1. Crash: kill -9 at random points during `replay ARCHIVE`, restart, nothing lost


def test_kill_9_three_times_during_replay_loses_nothing(tmp_path: Path) -> None:
    result = crash_replay_scenario(tmp_path, events=3000, files=600, kills=3, seed=20261129)
    # The last run found the earlier ones' work on the server.
    assert result["final"]["already_existed"] >= result["killed_at"][-1] > 0


# ---------------------------------------------------------------------------------------------
# 2. Chaos: every fault type; the server ends with exactly what was produced, counters reconcile


def test_chaos_every_fault_type_nothing_lost_counters_reconcile(tmp_path: Path) -> None:
    result = chaos_scenario(tmp_path, events=2000, files=200, feed_seconds=6.25)
    # The faults were felt by the client, not only injected.
    errors = result["metrics"]["errors"]
    assert result["metrics"]["failed_requests"] > 0 and errors, result["metrics"]


# ---------------------------------------------------------------------------------------------
# 3a. Fuzzing the hook's stdin


def test_hook_fuzz_random_bytes_and_payload_shaped_json(tmp_path: Path) -> None:
    hook_fuzz_scenario(tmp_path, examples=150)


# ---------------------------------------------------------------------------------------------
# 3b. Fuzzing stdin JSON lines


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(records)
def test_parse_record_fuzz_one_line_errors_only(obj: Any) -> None:
    check_parse_record(obj)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(stdin_plans)
def test_stdin_cli_fuzz_bad_lines_one_error_each_good_ones_delivered(plan: list[tuple[bool, bytes]]) -> None:
    check_stdin_cli(plan)


# ---------------------------------------------------------------------------------------------
# 3c. Fuzzing the service's answers to HttpSink


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(answers(), max_size=8), st.integers(1, 7), st.booleans())
@example([Answer(200, "application/json", "json", junk_json={})], 1, False)  # 200 {} is not "success": true
def test_http_sink_fuzz_never_raises_and_acks_only_what_the_server_acked(script: list[Answer], n: int,
                                                                         use_batch: bool) -> None:
    check_http_answers(script, n, use_batch)


# ---------------------------------------------------------------------------------------------
# 4. Disk pressure


def test_small_map_grows_then_fails_with_one_clear_line_and_nothing_corrupt(tmp_path: Path) -> None:
    # 1 MiB map, 4 MiB limit, ~1.5 MiB of events: the map grows and everything is queued.
    data = tmp_path / "grow"
    out = run_cli("run", "--source", "stdin", env=map_env(data, 1, 4), input=record_lines(24, 60_000))
    assert out.returncode == 0, out.stderr
    assert "left in spool 24" in out.stderr, out.stderr
    assert (data / "data.mdb").stat().st_size > 1024 * 1024
    assert len(readable_spool(data)) == 24 and verify_in_subprocess(data) == []

    # 1 MiB map, 2 MiB limit: first a batch that fits, then more than fits.
    data = tmp_path / "full"
    env = map_env(data, 1, 2)
    first = run_cli("run", "--source", "stdin", env=env, input=record_lines(8, 60_000, "/dp/a"))
    assert first.returncode == 0, first.stderr
    queued = readable_spool(data)
    assert len(queued) == 8
    out = run_cli("run", "--source", "stdin", env=env, input=record_lines(60, 60_000, "/dp/b"))
    errors = [line for line in out.stderr.splitlines() if line.startswith("pattern-tracker:")]
    assert out.returncode == 1 and len(errors) == 1, out.stderr
    assert "is full" in errors[0] and "max_map_size" in errors[0] and "Traceback" not in out.stderr
    after = readable_spool(data)
    assert after[:len(queued)] == queued  # what was queued is still there and readable
    assert verify_in_subprocess(data) == []

    # The hook at the limit: exit 0, one log line, the spool untouched and readable.
    big = json.dumps({"tool_name": "Write", "tool_input": {"file_path": str(tmp_path / "big.py"),
                                                           "content": "y = 2\n" * 400_000}}).encode()
    hooked = run_cli("hook", env=env, input=big)
    assert hooked.returncode == 0 and hooked.stdout == "" and hooked.stderr == ""
    [line] = (data / "hook.log").read_text().splitlines()
    assert "is full" in line and "Traceback" not in line
    assert readable_spool(data) == after and verify_in_subprocess(data) == []
    # A small edit still fits: the hook is not stuck after a failure.
    small = json.dumps({"tool_name": "Write", "tool_input": {"file_path": str(tmp_path / "small.py"),
                                                             "content": "z = 3\n"}}).encode()
    assert run_cli("hook", env=env, input=small).returncode == 0
    assert len(readable_spool(data)) == len(after) + 1


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_small_cache_size_drops_are_counted(tmp_path: Path, policy: str) -> None:
    data = tmp_path / "d"
    env = map_env(data, 1, 4, PATTERN_TRACKING_CACHE_SIZE="5", PATTERN_TRACKER__PATTERN_TRACKING__OVERFLOW_POLICY=policy)
    out = run_cli("run", "--source", "stdin", env=env, input=record_lines(12, 200, "/cs/f"))
    assert out.returncode == 0, out.stderr
    # And through the hook (which never blocks).
    for i in range(3):
        doc = {"tool_name": "Write", "tool_input": {"file_path": str(tmp_path / f"h{i}.py"), "content": f"h = {i}\n"}}
        assert run_cli("hook", env=env, input=json.dumps(doc).encode()).returncode == 0
    stats = cli_json("cache", "stats", env=env)
    reason = "overflow_oldest" if policy == "drop_oldest" else "overflow_newest"
    assert stats["size"] == 5 and set(stats["dropped_by_reason"]) == {reason}, stats
    kept = readable_spool(data)
    assert len(kept) == 5 and verify_in_subprocess(data) == []
    # Occurrences reconcile: what entered the spool left it (acked, dead, expired, dropped) or is
    # there; a newcomer refused by drop_newest never entered.
    assert balanced(stats), stats
    # 15 events, 5 kept, the 10 others dropped once each: refused newcomers never entered
    # (drop_newest); under drop_oldest every event entered once, and one dropped while in flight
    # is not queued again when its delivery fails (tests/test_spool_in_flight_drops.py).
    assert stats["dropped"] == 10 and stats["entered"] == (5 if policy == "drop_newest" else 15), stats
