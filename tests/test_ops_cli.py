"""The operator commands (dlq, circuit, cache, drain) as a user runs them: real console-script
subprocesses over a real data directory, a real `pattern-tracker serve` as the service."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pattern_tracker.state.dead_letter import DeadLetter, DeadLetters
from pattern_tracker.model.events import PatternEvent, build_event
from pattern_tracker.core.lease import DrainLease
from pattern_tracker.state.spool import Spool
from pattern_tracker.core.store import MIB, Store, u64
from tests.clitools import cli_env, free_port, run_cli, serve

# Fast failure: tiny backoff, the circuit opens after two failed calls.
FAST = {"EXPONENTIAL_BACKOFF_BASE_DELAY": "0.01", "EXPONENTIAL_BACKOFF_MAX_DELAY": "0.05",
        "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2"}
SECRET = "API_KEY = 'sk-do-not-print-me'"


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def env_for(data: Path, url: str | None = None, **extra: str) -> dict[str, str]:
    env = cli_env(data, **FAST, **extra)
    if url:
        env["PATTERN_TRACKING_API_URL"] = url
    return env


def cli(*args: str, env: dict[str, str], input: bytes | None = None, code: int | None = 0):
    out = run_cli(*args, env=env, input=input)
    if code is not None:
        assert out.returncode == code, f"{args}: exit {out.returncode}\nstdout: {out.stdout}\nstderr: {out.stderr}"
    assert "Traceback" not in out.stderr
    return out


def cli_json(*args: str, env: dict[str, str], code: int = 0):
    return json.loads(cli(*args, "--json", env=env, code=code).stdout)


def one_error_line(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def changes(*pairs: tuple[str, str]) -> bytes:
    return "".join(json.dumps({"file_path": p, "code": c}) + "\n" for p, c in pairs).encode()


def seed_spool_via_failed_run(data: Path, n: int = 2) -> dict[str, str]:
    """`run --source stdin` while the service is down: the events stay in the spool."""
    env = env_for(data, closed_port_url())
    cli("run", "--source", "stdin", env=env, input=changes(*[(f"/x/f{i}.py", f"print({i})") for i in range(n)]))
    return env


def invalid_event(eid: str, path: str) -> bytes:
    """A full PatternEvent the local validate stage dead-letters (a merge needs two parents)."""
    return (json.dumps({"event_id": eid, "event_type": "pattern_merged", "pattern_id": f"p-{eid}",
                        "pattern_version": "1", "parent_pattern_ids": ["only-one"], "file_path": path,
                        "code": SECRET}) + "\n").encode()


@contextmanager
def opened(data: Path) -> Iterator[Store]:
    store = Store.open(data, map_size=64 * MIB)
    try:
        yield store
    finally:
        store.close()


def event(path: str, code: str) -> PatternEvent:
    return build_event(file_path=path, code=code, version=1, parent_pattern_id=None, source="api",
                       occurred_at=time.time())


def service_versions(url: str, path: str) -> list[dict]:
    q = urllib.parse.urlencode({"file_path": path, "limit": 100})
    with urllib.request.urlopen(f"{url}/api/pattern-traceability/lineage/query?{q}", timeout=5) as resp:
        return json.loads(resp.read())["data"]["patterns"]


# ---------------------------------------------------------------------------------------
# circuit


def test_circuit_open_status_reset_disable_across_processes(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data")
    status = cli_json("circuit", "status", env=env)
    assert status["state"] == "closed" and status["failure_count"] == 0 and status["retry_at"] is None

    out = cli("circuit", "open", env=env)
    assert "forced_open" in out.stdout and "never: forced open until" in out.stdout
    # Another process sees it (the state is in LMDB), and so does this one.
    status = cli_json("circuit", "status", env=env)
    assert status["state"] == "forced_open" and status["trip_count"] == 1 and status["opened_at_iso"].endswith("Z")
    with opened(tmp_path / "data") as store:
        from pattern_tracker.operators.breaker import BreakerSettings
        from pattern_tracker.state.circuit_store import SharedBreaker

        assert SharedBreaker(store, BreakerSettings()).state().state == "forced_open"

    # Forced open: a drain sends nothing and says so.
    with opened(tmp_path / "data") as store:
        Spool(store).enqueue([event("/x/held.py", "x = 1")], time.time())
    out = cli("drain", env=env, code=4)
    assert "circuit forced_open" in out.stdout and "left in spool 1" in out.stdout

    reset = cli_json("circuit", "reset", env=env)
    assert reset["state"] == "closed" and reset["failure_count"] == 0 and reset["action"] == "reset"
    assert "state:" in cli("circuit", "status", env=env).stdout
    assert cli_json("circuit", "disable", env=env)["state"] == "disabled"
    assert cli_json("circuit", "status", env=env)["state"] == "disabled"


def test_circuit_status_after_failures_shows_when_the_next_trial_is(tmp_path: Path) -> None:
    env = seed_spool_via_failed_run(tmp_path / "data")
    status = cli_json("circuit", "status", env=env)
    assert status["state"] == "open" and status["failure_count"] >= 2 and status["trip_count"] == 1
    assert status["retry_at"] == pytest.approx(status["opened_at"] + 60)
    text = cli("circuit", "status", env=env).stdout
    assert "state:                  open" in text and "next trial (retry_at):" in text and "(in " in text


# ---------------------------------------------------------------------------------------
# cache


def test_cache_stats_after_a_failed_delivery(tmp_path: Path) -> None:
    env = seed_spool_via_failed_run(tmp_path / "data", n=2)
    stats = cli_json("cache", "stats", env=env)
    assert stats["size"] == 2 and stats["bound"] == 1000 and stats["dead_letter"] == 0
    assert stats["spilled"] >= 2 and stats["oldest_age"] >= 0 and stats["ttl"] == 3600
    assert stats["overflow_policy"] == "drop_oldest"
    text = cli("cache", "stats", env=env).stdout
    assert "2 / 1000 events" in text and "oldest:" in text and "hit_rate:" in text


def test_cache_stats_counts_entered_and_replayed(tmp_path: Path) -> None:
    env = seed_spool_via_failed_run(tmp_path / "data", n=2)
    stats = cli_json("cache", "stats", env=env)
    # Both entered once; each failed delivery is a spill counted once per event, whether the
    # event was first sent live or fed by replay.
    assert stats["entered"] == 2 and stats["spilled"] == 2 and stats["replayed_ok"] == 0


def test_spool_drain_is_a_usage_error_that_names_the_drain_command(tmp_path: Path) -> None:
    """`drain` is a command of its own, not an action of the spool: a user who types `spool drain`
    is told where it is, in the one error line (and under `cache --help`); the spool is untouched."""
    env = seed_spool_via_failed_run(tmp_path / "data", n=2)
    for args in (("spool", "drain"), ("cache",)):
        line = one_error_line(cli(*args, env=env, code=2))
        assert line.startswith("pattern-tracker cache: error: ") and "pattern-tracker drain" in line, line
    assert "To deliver the spooled events now: pattern-tracker drain." in cli("cache", "--help", env=env).stdout
    assert cli_json("cache", "stats", env=env)["size"] == 2


def test_cache_clear_refuses_without_yes_then_empties(tmp_path: Path) -> None:
    env = seed_spool_via_failed_run(tmp_path / "data", n=3)
    out = cli("cache", "clear", env=env, code=2)
    line = one_error_line(out)
    assert "3 undelivered event(s) would be lost" in line and "--yes" in line
    assert cli_json("cache", "stats", env=env)["size"] == 3
    assert cli_json("cache", "clear", "--yes", env=env) == {"cleared": 3}
    assert cli_json("cache", "stats", env=env)["size"] == 0
    # Nothing left: no confirmation needed.
    assert "cleared 0 event(s)" in cli("cache", "clear", env=env).stdout


def test_cache_cleanup_expires_entries_older_than_the_ttl(tmp_path: Path) -> None:
    now = time.time()
    with opened(tmp_path / "data") as store:
        spool = Spool(store)
        spool.enqueue([event("/x/old1.py", "a = 1"), event("/x/old2.py", "b = 2")], now - 7200)
        spool.enqueue([event("/x/new.py", "c = 3")], now)
    env = env_for(tmp_path / "data")
    assert cli_json("cache", "cleanup", env=env) == {"expired": 2, "ttl": 3600, "left": 1}
    assert "expired 0 event(s) older than cache_ttl (1h 00m); 1 left" in cli("cache", "cleanup", env=env).stdout
    # A shorter TTL from the environment applies at once.
    short = env_for(tmp_path / "data", PATTERN_TRACKING_CACHE_TTL="0.001")
    time.sleep(0.01)
    assert cli_json("cache", "cleanup", env=short)["expired"] == 1


# ---------------------------------------------------------------------------------------
# cache quarantine

LEGACY = 9001  # a quarantined entry from before the notes: no time, no reason


def seed_quarantine(data: Path) -> tuple[dict[str, str], bytes]:
    """Three spooled events; the second one's bytes are corrupted in LMDB (they still hold its
    code); a drain delivers the others and quarantines it. Plus a legacy entry without a note."""
    with opened(data) as store:
        Spool(store).enqueue([event(f"/x/q{i}.py", f"{SECRET}  # {i}") for i in range(3)], time.time())
        spool_db = store.db("spool")
        corrupt = store.read(lambda txn: txn.get(u64(2), db=spool_db))[:-3]  # truncated JSON
        assert SECRET.encode() in corrupt
        store.write(lambda txn: txn.put(u64(2), corrupt, db=spool_db))
        store.write(lambda txn: txn.put(u64(LEGACY), b"legacy " + SECRET.encode(), db=store.db("quarantine")))
    env = env_for(data)  # no service: the embedded store
    drained = cli_json("drain", env=env)
    assert drained["delivered"] == 2 and drained["left_in_spool"] == 0
    return env, corrupt


def test_cache_quarantine_list_and_stats_never_print_the_bytes(tmp_path: Path) -> None:
    env, corrupt = seed_quarantine(tmp_path / "data")
    out = cli("cache", "quarantine", "list", env=env)
    assert SECRET not in out.stdout and "legacy" not in out.stdout
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["SEQ", "QUARANTINED_AT", "SIZE", "REASON"] and len(lines) == 3
    seq, at, size, unit, *reason = lines[1].split()
    assert (seq, size, unit) == ("2", str(len(corrupt)), "B") and at.endswith("Z")
    assert " ".join(reason) == "Input data was truncated"
    assert lines[2].split() == [str(LEGACY), "unknown", str(len(b"legacy " + SECRET.encode())), "B", "unknown"]

    listed = cli_json("cache", "quarantine", "list", env=env)
    assert SECRET not in json.dumps(listed) and listed["total"] == 2
    [first, legacy] = listed["entries"]
    assert first["seq"] == 2 and first["size"] == len(corrupt) and first["quarantined_at"] == at
    assert first["reason"] == "Input data was truncated"
    assert legacy == {"seq": LEGACY, "size": len(b"legacy " + SECRET.encode()), "quarantined_at": None, "reason": None}

    stats = cli_json("cache", "stats", env=env)
    assert stats["quarantined"] == 2 and stats["size"] == 0
    assert "quarantined:  2 undecodable spool entries (`cache quarantine list`)" in cli("cache", "stats", env=env).stdout


def corrupt_oldest(data: Path, n: int) -> bytes:
    """``n`` spooled events, the OLDEST one's bytes truncated in LMDB; returns them."""
    with opened(data) as store:
        Spool(store).enqueue([event(f"/x/o{i}.py", f"x = {i}\n") for i in range(n)], time.time())
        spool_db = store.db("spool")
        corrupt = store.read(lambda txn: txn.get(u64(1), db=spool_db))[:-3]
        store.write(lambda txn: txn.put(u64(1), corrupt, db=spool_db))
    return corrupt


def test_an_unreadable_oldest_entry_is_quarantined_and_blocks_nothing(tmp_path: Path) -> None:
    """The spool's expiry reads the head of the oldest entries first: an unreadable OLDEST entry
    made drain, run, status, health, `cache stats` and `cache cleanup` fail with `internal error:
    JSONDecodeError` until `cache clear --yes` threw the good events away too."""
    data = tmp_path / "data"
    corrupt = corrupt_oldest(data, 3)
    env = env_for(data)  # no service: the embedded store
    assert cli_json("cache", "stats", env=env)["size"] == 3  # reading writes nothing
    assert cli("health", "--json", env=env, code=None).returncode in (0, 1, 2)
    assert cli("status", "--json", env=env).returncode == 0
    drained = cli_json("drain", env=env)
    assert (drained["delivered"], drained["left_in_spool"]) == (2, 0), drained
    [entry] = cli_json("cache", "quarantine", "list", env=env)["entries"]
    assert entry["seq"] == 1 and entry["size"] == len(corrupt), entry
    assert cli_json("cache", "cleanup", env=env)["expired"] == 0


def test_an_unreadable_oldest_entry_is_quarantined_when_drop_oldest_makes_room(tmp_path: Path) -> None:
    """A full spool under drop_oldest pops its oldest entry for a newcomer (a hook's edit): an
    unreadable one made the hook fail; now its bytes go to the quarantine, making the room."""
    data = tmp_path / "data"
    corrupt_oldest(data, 3)
    env = env_for(data, PATTERN_TRACKING_CACHE_SIZE="3", PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false")
    payload = {"tool_name": "Write", "tool_input": {"file_path": str(tmp_path / "new.py"), "content": "y = 1\n"}}
    out = run_cli("hook", env=env, input=json.dumps(payload).encode())
    assert out.returncode == 0 and out.stderr == "", out
    [line] = (data / "hook.log").read_text().splitlines()  # said once, where the hook says things
    assert " WARNING " in line and "spool entry 1 cannot be decoded" in line and "quarantine" in line, line
    stats = cli_json("cache", "stats", env=env)
    assert (stats["size"], stats["quarantined"], stats["dropped"]) == (3, 1, 0), stats
    assert [e["seq"] for e in cli_json("cache", "quarantine", "list", env=env)["entries"]] == [1]


def test_cache_quarantine_export_writes_the_raw_bytes_privately_and_never_overwrites(tmp_path: Path) -> None:
    env, corrupt = seed_quarantine(tmp_path / "data")
    out_dir = tmp_path / "export" / "q"
    out = cli("cache", "quarantine", "export", str(out_dir), env=env)
    assert out.stdout == f"exported 2 undecodable spool entries to {out_dir} (quarantine-SEQ.bin); they stay in quarantine\n"
    assert SECRET not in out.stdout
    assert sorted(os.listdir(out_dir)) == ["quarantine-2.bin", f"quarantine-{LEGACY}.bin"]
    assert (out_dir / "quarantine-2.bin").read_bytes() == corrupt
    assert (out_dir / f"quarantine-{LEGACY}.bin").read_bytes() == b"legacy " + SECRET.encode()
    assert os.stat(out_dir).st_mode & 0o777 == 0o700
    assert {os.stat(f).st_mode & 0o777 for f in out_dir.iterdir()} == {0o600}
    assert cli_json("cache", "quarantine", "list", env=env)["total"] == 2  # still in quarantine

    # Never overwrite: one line, exit 2, the file keeps what the operator did with it.
    (out_dir / "quarantine-2.bin").write_bytes(b"edited by the operator")
    line = one_error_line(cli("cache", "quarantine", "export", str(out_dir), "2", env=env, code=2))
    assert "refusing to overwrite" in line and "quarantine-2.bin" in line and "nothing written" in line
    assert (out_dir / "quarantine-2.bin").read_bytes() == b"edited by the operator"

    # A selection, to an existing directory; --json.
    (tmp_path / "one").mkdir()
    assert cli_json("cache", "quarantine", "export", str(tmp_path / "one"), "2", env=env) == {
        "exported": 1, "dir": str(tmp_path / "one"), "files": ["quarantine-2.bin"]}
    assert (tmp_path / "one" / "quarantine-2.bin").read_bytes() == corrupt
    for args, words in [(("2", "99"), "no quarantined entry with seq 99"), (("x",), "SEQ must be a positive integer")]:
        line = one_error_line(cli("cache", "quarantine", "export", str(tmp_path / "none"), *args, env=env, code=2))
        assert words in line and "cache quarantine list" in line
    assert not (tmp_path / "none").exists()


def test_cache_quarantine_purge_needs_yes_and_known_seqs(tmp_path: Path) -> None:
    env, _ = seed_quarantine(tmp_path / "data")
    line = one_error_line(cli("cache", "quarantine", "purge", env=env, code=2))
    assert "2 undecodable spool entries would be deleted for good" in line and "--yes" in line
    line = one_error_line(cli("cache", "quarantine", "purge", "2", env=env, code=2))
    assert "1 undecodable spool entry would be deleted for good" in line
    line = one_error_line(cli("cache", "quarantine", "purge", "2", "99", "--yes", env=env, code=2))
    assert "no quarantined entry with seq 99 (nothing changed" in line
    assert cli_json("cache", "quarantine", "list", env=env)["total"] == 2  # nothing deleted

    assert cli_json("cache", "quarantine", "purge", "2", "--yes", env=env) == {"purged": 1, "left": 1}
    assert [e["seq"] for e in cli_json("cache", "quarantine", "list", env=env)["entries"]] == [LEGACY]
    out = cli("cache", "quarantine", "purge", "--yes", env=env)
    assert "purged 1 undecodable spool entry; 0 left" in out.stdout
    assert cli("cache", "quarantine", "list", env=env).stdout == "the quarantine is empty\n"
    assert cli_json("cache", "stats", env=env)["quarantined"] == 0
    # Nothing left: no confirmation needed.
    assert "purged 0 undecodable spool entries; 0 left" in cli("cache", "quarantine", "purge", env=env).stdout
    with opened(tmp_path / "data") as store:  # the notes went with their entries
        state = store.db("state")
        assert store.read(lambda txn: [k for k, _ in txn.cursor(db=state) if k.startswith(b"quarantine:")]) == []


# ---------------------------------------------------------------------------------------
# drain


def test_drain_delivers_the_backlog_to_a_live_service(tmp_path: Path) -> None:
    seed_spool_via_failed_run(tmp_path / "data", n=3)  # the circuit is open now
    with serve(tmp_path / "service") as url:
        live = env_for(tmp_path / "data", url)
        cli("circuit", "reset", env=live)
        out = cli("drain", env=live)
        assert out.stdout.strip().splitlines()[-1].startswith("drain: delivered 3, already there 0, dead-lettered 0, left in spool 0")
        for i in range(3):
            [node] = service_versions(url, f"/x/f{i}.py")
            assert node["event_type"] == "pattern_created"
        assert cli_json("cache", "stats", env=live)["size"] == 0
        # Nothing left: a second drain is a quiet success.
        result = cli_json("drain", env=live)
        assert result["status"] == "empty" and result["delivered"] == 0 and result["left_in_spool"] == 0


def test_drain_with_the_service_down_exits_4_and_keeps_the_events(tmp_path: Path) -> None:
    with opened(tmp_path / "data") as store:
        Spool(store).enqueue([event("/x/a.py", "a = 1"), event("/x/b.py", "b = 2")], time.time())
    env = env_for(tmp_path / "data", closed_port_url())
    started = time.monotonic()
    out = cli("drain", env=env, code=4)
    assert time.monotonic() - started < 15
    assert "the service is unavailable: circuit open" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("drain: delivered 0, already there 0, dead-lettered 0, left in spool 2")
    result = cli_json("drain", env=env, code=4)
    assert result["status"] == "pending" and result["left_in_spool"] == 2 and result["circuit"] == "open"
    assert result["reason"] == "circuit_open"
    assert cli_json("cache", "stats", env=env)["size"] == 2


def test_drain_refuses_politely_while_another_process_holds_the_lease(tmp_path: Path) -> None:
    with opened(tmp_path / "data") as store:
        Spool(store).enqueue([event("/x/a.py", "a = 1")], time.time())
        lease = DrainLease(store)
        assert lease.acquire(time.time())  # this test process is alive: the lease holds
        env = env_for(tmp_path / "data")
        out = cli("drain", env=env)
        assert out.stdout == f"another process (pid {os.getpid()}) is draining this data directory\n"
        assert cli_json("drain", env=env) == {"status": "busy", "holder_pid": os.getpid(),
                                              "holder_host": socket.gethostname()}
        assert Spool(store).size() == 1
        lease.release()
    # Lease gone: the drain delivers (embedded store, no service configured).
    assert "delivered 1" in cli("drain", env=env).stdout


# ---------------------------------------------------------------------------------------
# dlq


def seed_dead_letters(data: Path) -> dict[str, str]:
    env = env_for(data)  # no service: the embedded store; validation refuses before delivery
    out = cli("run", "--source", "stdin", env=env, input=invalid_event("e1", "/x/m1.py") + invalid_event("e2", "/x/m2.py"))
    assert "dead-lettered 2" in out.stderr
    return env


def test_dlq_list_and_show_never_print_code_unless_asked(tmp_path: Path) -> None:
    env = seed_dead_letters(tmp_path / "data")
    out = cli("dlq", "list", env=env)
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["SEQ", "FAILED_AT", "STAGE", "HTTP", "ERROR_CLASS", "EVENT_ID", "FILE_PATH", "REASON"]
    assert len(lines) == 3 and "sk-do-not-print-me" not in out.stdout
    first = lines[1].split()
    assert first[0] == "1" and first[1].endswith("Z") and first[2:7] == ["validate", "-", "validation", "e1", "/x/m1.py"]
    assert "pattern_merged needs at least two parent pattern ids" in lines[1]

    listed = cli_json("dlq", "list", "--limit", "1", env=env)
    assert listed["total"] == 2 and listed["shown"] == 1
    assert listed["letters"][0]["seq"] == 1 and listed["letters"][0]["event_id"] == "e1"
    assert "code" not in json.dumps(listed)
    assert "(1 of 2 dead letters shown" in cli("dlq", "list", "--limit", "1", env=env).stdout

    shown = cli("dlq", "show", "2", env=env).stdout
    assert "sk-do-not-print-me" not in shown and "hidden (" in shown and "--code" in shown
    assert "event_type:" in shown and "pattern_merged" in shown and "only-one" in shown
    assert SECRET in cli("dlq", "show", "2", "--code", env=env).stdout
    doc = cli_json("dlq", "show", "2", env=env)
    assert doc["seq"] == 2 and doc["event"]["event_id"] == "e2" and "code" not in doc["event"]
    assert doc["code_chars"] == len(SECRET)
    assert cli_json("dlq", "show", "2", "--code", env=env)["event"]["code"] == SECRET


def test_dlq_bad_seq_is_one_line_and_a_usage_or_failure_code(tmp_path: Path) -> None:
    env = seed_dead_letters(tmp_path / "data")
    for args, code, words in [
        (("dlq", "show", "abc"), 2, "SEQ must be a positive integer"),
        (("dlq", "show", "0"), 2, "SEQ must be a positive integer"),
        (("dlq", "show", "99"), 1, "no dead letter with seq 99"),
        (("dlq", "purge", "1", "99"), 1, "no dead letter with seq 99"),
        (("dlq", "replay", "98", "99", "--no-drain"), 1, "no dead letter with seq 98, 99"),
        (("dlq", "replay"), 2, "or --all"),
        (("dlq", "purge", "1", "--all"), 2, "not both"),
        (("dlq", "list", "--limit", "x"), 2, "invalid int value"),
        (("dlq",), 2, "required"),
    ]:
        assert words in one_error_line(cli(*args, env=env, code=code)), args
    # All-or-nothing: the failed purge and replay above changed nothing.
    assert cli_json("dlq", "list", env=env)["total"] == 2


def test_dlq_purge(tmp_path: Path) -> None:
    env = seed_dead_letters(tmp_path / "data")
    assert "purged 1 dead letter(s); 1 left" in cli("dlq", "purge", "1", env=env).stdout
    assert [r["seq"] for r in cli_json("dlq", "list", env=env)["letters"]] == [2]
    line = one_error_line(cli("dlq", "purge", "--all", env=env, code=2))
    assert "1 letter(s) would be deleted for good" in line and "--yes" in line
    assert cli_json("dlq", "purge", "--all", "--yes", env=env) == {"purged": 1, "left": 0}
    assert "the dead letter is empty" in cli("dlq", "list", env=env).stdout


def test_dlq_replay_moves_a_fixed_letter_to_the_spool_and_the_drain_delivers_it(tmp_path: Path) -> None:
    env = seed_dead_letters(tmp_path / "data")  # seq 1, 2: still invalid
    fixed = event("/x/fixed.py", "def fixed():\n    return 1\n")
    with opened(tmp_path / "data") as store:
        dead = DeadLetters(store)
        store.write(lambda txn: dead.put(txn, [DeadLetter(event=fixed, reason="HTTP 400 parent missing", http_status=400,
                                                          error_class="validation", failed_at=time.time())]))
        assert dead.size() == 3
    with serve(tmp_path / "service") as url:
        live = env_for(tmp_path / "data", url)
        out = cli("dlq", "replay", "3", env=live)
        lines = out.stdout.strip().splitlines()
        assert lines[0] == "replayed 1 dead letter(s) into the spool"
        assert lines[-1].startswith("drain: delivered 1, already there 0, dead-lettered 0, left in spool 0")
        [node] = service_versions(url, "/x/fixed.py")
        assert node["pattern_id"] == fixed.pattern_id
    assert [r["seq"] for r in cli_json("dlq", "list", env=env)["letters"]] == [1, 2]

    # --all --no-drain: moved, not delivered; still invalid, so the next drain dead-letters them again.
    result = cli_json("dlq", "replay", "--all", "--no-drain", env=env)
    assert result == {"replayed": 2, "kept": []}
    assert cli_json("dlq", "list", env=env)["total"] == 0
    assert cli_json("cache", "stats", env=env)["size"] == 2
    drained = cli_json("drain", env=env)
    assert drained["dead_lettered"] == 2 and drained["left_in_spool"] == 0
    assert [r["seq"] for r in cli_json("dlq", "list", env=env)["letters"]] == [4, 5]


def test_dlq_replay_keeps_letters_the_full_spool_refuses(tmp_path: Path) -> None:
    with opened(tmp_path / "data") as store:
        Spool(store).enqueue([event("/x/queued.py", "q = 1")], time.time())
        dead = DeadLetters(store)
        store.write(lambda txn: dead.put(txn, [DeadLetter(event=event("/x/l.py", "l = 1"), reason="r")]))
    env = env_for(tmp_path / "data", PATTERN_TRACKING_CACHE_SIZE="1",
                  PATTERN_TRACKER__PATTERN_TRACKING__OVERFLOW_POLICY="drop_newest")
    out = cli("dlq", "replay", "1", "--no-drain", env=env, code=1)
    assert "replayed 0 dead letter(s)" in out.stdout
    assert "the spool is full" in one_error_line(out)
    assert cli_json("dlq", "list", env=env)["total"] == 1 and cli_json("cache", "stats", env=env)["size"] == 1


def test_dlq_replay_takes_free_room_only_even_under_drop_oldest(tmp_path: Path) -> None:
    """With the default drop_oldest, replaying letters into a nearly full spool pushed out spooled
    events (a live edit, letters replayed a moment before): they ended in neither the spool nor the
    dead letter, and the command said `replayed 3`, exit 0. A letter has a record (the dead letter);
    the edit has none: the letters without room stay dead letters."""
    with opened(tmp_path / "data") as store:
        Spool(store).enqueue([event("/x/live-edit.py", "e = 1")], time.time())
        dead = DeadLetters(store)
        store.write(lambda txn: dead.put(txn, [DeadLetter(event=event(f"/x/l{i}.py", f"l = {i}"), reason="r")
                                               for i in range(3)]))
    env = env_for(tmp_path / "data", PATTERN_TRACKING_CACHE_SIZE="2")  # overflow_policy: drop_oldest (default)
    out = cli("dlq", "replay", "--all", "--no-drain", env=env, code=1)
    assert "replayed 1 dead letter(s)" in out.stdout and "2 dead letter(s) kept" in one_error_line(out), out
    with opened(tmp_path / "data") as store:
        spooled_paths = [entry.event.file_path for _, entry in Spool(store).read_batch(0, 10)]
    assert spooled_paths == ["/x/live-edit.py", "/x/l0.py"], spooled_paths
    assert cli_json("dlq", "list", env=env)["total"] == 2
    assert cli_json("cache", "stats", env=env)["dropped"] == 0


def test_spool_is_an_alias_of_cache(tmp_path: Path) -> None:
    """Code and docs say spool, the guide says cache: both names reach the same commands."""
    env = cli_env(tmp_path / "data")
    with opened(tmp_path / "data") as store:
        Spool(store).enqueue([event("/x/a.py", "a = 1")], time.time())
    by_cache = cli_json("cache", "stats", "--json", env=env)
    by_spool = cli_json("spool", "stats", "--json", env=env)
    assert by_cache["size"] == by_spool["size"] == 1
    assert by_cache.keys() == by_spool.keys()
    assert "cache (spool)" in cli("--help", env=env).stdout
