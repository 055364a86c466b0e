"""A configuration the hook cannot read costs no edit, and every report says what is wrong.

The hook's capture needs only the data directory and safe spool limits; a typo in a setting that
only delivery uses (or a malformed ``--config`` file) must not drop the edit in silence. Real
parts only: the console script in subprocesses, the data directory's LMDB, ``serve`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.clitools import cli_env, run_cli, serve
from tests.hooktools import hook_log, payloads, retarget, spooled


def write_payload(root: Path) -> tuple[bytes, str]:
    doc = retarget(next(p for p in payloads() if p["tool_name"] == "Write"), root)
    return json.dumps(doc).encode(), doc["tool_input"]["file_path"]


def delivered(url: str, file_path: str) -> list[dict]:
    query = urllib.parse.urlencode({"file_path": file_path, "limit": 10})
    with urllib.request.urlopen(f"{url}/api/pattern-traceability/lineage/query?{query}", timeout=5) as r:
        return json.loads(r.read())["data"]["patterns"]


def broken_setup(tmp_path: Path, broken: str, good: dict[str, str]) -> tuple[dict[str, str], list[str], str, Path | None]:
    """(environment, --config args, what the error must name, the config file) for one kind of breakage."""
    if broken == "env":
        return {**good, "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "abc"}, [], "env CIRCUIT_BREAKER_FAILURE_THRESHOLD", None
    if broken == "env-name":  # a variable of ours that names nothing (a typo)
        return {**good, "PATTERN_TRACKING_CACHESIZE": "5"}, [], "PATTERN_TRACKING_CACHESIZE", None
    cfg = tmp_path / "pt.yaml"
    cfg.write_text("resilience:\n  circuit_breaker:\n    failure_threshold: 3\n  retry: [max_attempts: 2\n")
    return good, ["--config", str(cfg)], f"{cfg}:", cfg


@pytest.mark.parametrize("broken", ["env", "env-name", "file"])
def test_a_broken_configuration_keeps_the_edit_reports_it_and_the_fix_delivers_it(tmp_path: Path, broken: str) -> None:
    data = tmp_path / "data"
    payload, file_path = write_payload(tmp_path / "proj")
    with serve(tmp_path / "service") as url:
        good = cli_env(data, PATTERN_TRACKING_API_URL=url)
        bad, args, named, cfg = broken_setup(tmp_path, broken, good)
        error = run_cli("config", "show", *args, env=bad).stderr.strip()  # the CLI's own one line for it
        assert error.startswith("config error: ") and named in error and "\n" not in error

        out = run_cli("hook", *args, env=bad, input=payload)
        assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
        # Kept, durably, where the fixed configuration will look; no drainer (it could not read it either).
        [event] = spooled(data)
        assert event["file_path"] == file_path and event["tool_name"] == "Write"
        assert not (data / "drain.log").exists()
        [line] = hook_log(data)
        assert error in line and "Traceback" not in line

        # A terminal whose own configuration is fine sees the hook's error everywhere.
        h = run_cli("health", env=good)
        assert h.returncode == 2 and h.stdout.startswith("pattern-tracker: UNHEALTHY\n"), h
        assert f"  - [unhealthy] {error} (seen by a hook at " in h.stdout and h.stderr == ""
        doc = json.loads(run_cli("health", "--json", env=good).stdout)
        assert doc["status"] == "unhealthy" and doc["config_error"]["error"] == error
        assert doc["reasons"][0]["check"] == "config" and doc["reasons"][0]["message"].startswith(error)
        status = run_cli("status", env=good)
        assert status.returncode == 0 and f"  config:         {error} (seen by a hook at " in status.stdout
        assert json.loads(run_cli("status", "--json", env=good).stdout)["config_error"]["error"] == error
        m = json.loads(run_cli("metrics", "--json", env=good).stdout)
        assert m["config_error"]["error"] == error and m["hook"] == {"invocations": 1, "config_errors": 1}
        assert m["cached_events"] == 1
        assert error in run_cli("metrics", env=good).stdout

        # In the broken environment itself, every command says it in one line, exit 2, and keeps the edit.
        for command in ("health", "status", "metrics", "drain"):
            r = run_cli(command, *args, env=bad)
            assert (r.returncode, r.stdout, r.stderr) == (2, "", error + "\n"), (command, r)
        assert len(spooled(data)) == 1

        # Fixed: the next drain delivers the kept edit, and the error is over.
        if cfg is not None:
            cfg.write_text("resilience:\n  circuit_breaker:\n    failure_threshold: 3\n  retry:\n    max_attempts: 2\n")
        d = run_cli("drain", *args, env=good)
        assert d.returncode == 0 and "left in spool 0" in d.stdout, d
        [node] = delivered(url, file_path)
        assert node["pattern_id"] == event["pattern_id"]
        h = run_cli("health", "--json", *args, env=good)
        doc = json.loads(h.stdout)
        assert h.returncode == 0 and doc["status"] == "healthy" and doc["config_error"] is None, doc
        assert json.loads(run_cli("metrics", "--json", *args, env=good).stdout)["config_error"] is None
    assert spooled(data) == []


def test_a_hook_that_reads_its_configuration_again_clears_the_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    good = cli_env(data, PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false")
    first, _ = write_payload(tmp_path / "a")
    second, _ = write_payload(tmp_path / "b")
    assert run_cli("hook", env={**good, "PATTERN_TRACKING_CACHE_TTL": "soon"}, input=first).returncode == 0
    assert json.loads(run_cli("status", "--json", env=good).stdout)["config_error"]["source"] == "hook"
    assert run_cli("hook", env=good, input=second).returncode == 0
    assert json.loads(run_cli("status", "--json", env=good).stdout)["config_error"] is None
    assert len(spooled(data)) == 2 and run_cli("health", env=good).returncode == 0


def test_under_a_broken_configuration_the_hook_drops_nothing_already_waiting(tmp_path: Path) -> None:
    """While the configuration is broken the bound the user meant is unknown (the one that can be
    read, or the built-in 1000, may be smaller than what is queued): the hook keeps every edit."""
    data = tmp_path / "data"
    good = cli_env(data, PATTERN_TRACKING_CACHE_SIZE="2", PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false")
    for name in ("a", "b"):
        assert run_cli("hook", env=good, input=write_payload(tmp_path / name)[0]).returncode == 0
    bad = {**good, "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "abc"}
    assert run_cli("hook", env=bad, input=write_payload(tmp_path / "c")[0]).returncode == 0
    assert [Path(e["file_path"]).parent.name for e in spooled(data)] == ["a", "b", "c"]
    [line] = hook_log(data)
    assert "CIRCUIT_BREAKER_FAILURE_THRESHOLD" in line and "dropped" not in line


def test_a_recorded_configuration_error_is_the_first_unhealthy_reason() -> None:
    from pattern_tracker.usecases.health import Snapshot, assess, health_document

    error = "config error: pattern_tracking.cache_ttl = 'soon' (from env PATTERN_TRACKING_CACHE_TTL): expected a finite number > 0"
    snap = Snapshot(now=120.0, data_dir="/d", window_seconds=60.0, circuit="open", config_error=error,
                    config_error_source="hook", config_error_at=60.0)
    health = assess(snap)
    assert health.status == "unhealthy" and health.exit_code == 2
    assert [r.check for r in health.reasons] == ["config", "circuit"]
    assert health.reasons[0].message.startswith(error + " (seen by a hook at 1970-01-01T00:01:00Z")
    assert health_document(snap, health)["config_error"] == {"error": error, "source": "hook", "at": "1970-01-01T00:01:00Z"}
    assert assess(Snapshot(now=1.0, data_dir="/d", window_seconds=60.0)).status == "healthy"
