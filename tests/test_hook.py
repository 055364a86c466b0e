"""`pattern-tracker hook` as Claude Code runs it: a new process per edit, payload on stdin."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pattern_tracker.state.spool import Spool
from pattern_tracker.core.store import Store
from tests.clitools import BIN, cli_env, free_port, run_cli, serve, wait_for
from tests.fake_secrets import SECRET_CASES
from tests.hooktools import hook_log, payloads, retarget, spooled


def hook(env: dict[str, str], payload: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("hook", *args, env=env, input=payload)


def lease_holder(data: Path) -> object | None:
    from pattern_tracker.core.lease import DrainLease

    store = Store.open(data)
    try:
        return DrainLease(store).holder(time.time())
    finally:
        store.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # No drainer in these tests: we look at what the hook itself left in the spool.
    return cli_env(tmp_path / "data", PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false")


def test_each_tool_gives_the_right_event(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    by_tool = {}
    for p in payloads():
        by_tool.setdefault(p["tool_name"], p)
    out = hook(env, json.dumps(retarget(by_tool["Write"], root)).encode(), "--verbose")
    assert out.returncode == 0 and json.loads(out.stdout)["events"] == 1 and out.stderr == ""
    # Edit: the file is not on disk, so the edit is applied to the original the payload carries.
    hook(env, json.dumps(retarget(by_tool["Edit"], root)).encode())
    # MultiEdit: the file on disk wins.
    (root / "cart.py").write_text("class ShoppingCart:\n    pass\n")
    hook(env, json.dumps(retarget(by_tool["MultiEdit"], root)).encode())
    hook(env, json.dumps(retarget(by_tool["NotebookEdit"], root)).encode())
    bash = hook(env, json.dumps(by_tool["Bash"]).encode(), "--verbose")
    assert json.loads(bash.stdout) == {"events": 0, "ignored": True}
    events = spooled(tmp_path / "data")
    assert [(e["tool_name"], e["event_type"], e["pattern_version"]) for e in events] == [
        ("Write", "pattern_created", "1"),
        ("Edit", "pattern_modified", "2"),
        ("MultiEdit", "pattern_modified", "3"),
        ("NotebookEdit", "pattern_created", "1"),
    ]
    write, edit, multi, nb = events
    assert edit["parent_pattern_ids"] == [write["pattern_id"]] and multi["parent_pattern_ids"] == [edit["pattern_id"]]
    assert "round(sum(prices[i] for i in self.items), 2)" in edit["code"]
    assert multi["code"] == "class ShoppingCart:\n    pass\n"
    assert nb["file_path"].endswith(".ipynb#" + by_tool["NotebookEdit"]["tool_input"]["cell_id"])
    assert write["session_id"] == by_tool["Write"]["session_id"] and write["tool_use_id"] == by_tool["Write"]["tool_use_id"]
    assert write["source"] == "hook" and write["triggered_by"] == "claude_code_hook"
    assert len(write["timings"]["hook"]) == 2 and write["timings"]["hook"][0] <= write["timings"]["hook"][1]
    assert hook_log(tmp_path / "data") == []
    # The newer payload with extra fields is tolerated.
    newer = [p for p in payloads() if "agent_id" in p][0]
    assert json.loads(hook(env, json.dumps(retarget(newer, root)).encode(), "--verbose").stdout)["events"] == 1


def malformed_payloads() -> list[bytes]:
    write = json.dumps(payloads()[0]).encode()
    cases = [
        b"", b"   \n", b"{", write[: len(write) // 2], b"[]", b"[1, 2, 3]", b"null", b"42", b'"a string"',
        b"\xff\xfe\x00binary", b"{\"tool_name\": 3}", b"{\"tool_name\": \"Write\"}",
        b"{\"tool_name\": \"Write\", \"tool_input\": []}",
        b"{\"tool_name\": \"Write\", \"tool_input\": {\"file_path\": 7, \"content\": \"x\"}}",
        b"{\"tool_name\": \"Write\", \"tool_input\": {\"file_path\": \"/a.py\"}}",
        b"{\"tool_name\": \"Write\", \"tool_input\": {\"file_path\": \"/a.py\", \"content\": 5}}",
        b"{\"tool_name\": \"Edit\", \"tool_input\": {\"file_path\": \"/nope/a.py\", \"old_string\": \"x\", \"new_string\": \"y\"}}",
        b"{\"tool_name\": \"Edit\", \"tool_input\": {\"file_path\": \"/nope/a.py\", \"old_string\": \"zz\", \"new_string\": \"y\"},"
        b" \"tool_response\": {\"originalFile\": \"abc\"}}",
        b"{\"tool_name\": \"MultiEdit\", \"tool_input\": {\"file_path\": \"/nope/a.py\", \"edits\": \"no\"},"
        b" \"tool_response\": {\"originalFileContents\": \"a\"}}",
        b"{\"tool_name\": \"MultiEdit\", \"tool_input\": {\"file_path\": \"/nope/a.py\", \"edits\": [3]},"
        b" \"tool_response\": {\"originalFileContents\": \"a\"}}",
        b"{\"tool_name\": \"NotebookEdit\", \"tool_input\": {\"new_source\": \"x\"}}",
        b"{\"tool_name\": \"NotebookEdit\", \"tool_input\": {\"notebook_path\": \"/n.ipynb\", \"new_source\": 1}}",
        b"{\"tool_name\": \"Write\", \"session_id\": 5, \"tool_input\": {\"file_path\": \"/a.py\", \"content\": \"x\"}}",
        b"{\"tool_name\": \"Write\", \"tool_use_id\": [], \"tool_input\": {\"file_path\": \"/a.py\", \"content\": \"x\"}}",
        b"{'single': 'quotes'}", b"{\"a\": NaN", b"\x00\x01\x02\x03", "{\"tool_name\": \"Write\", \"x\": \"\udcff\"}".encode("utf-8", "surrogatepass"),
        b"{\"tool_name\": \"Write\", \"tool_input\": {\"file_path\": \"/a.py\", \"content\": \"x\"}} trailing",
        b"x" * (17 * 1024 * 1024),  # larger than hook.max_payload_bytes
    ]
    assert len(cases) == 30
    return cases


def test_thirty_malformed_payloads_exit_0_with_one_log_line_each(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    good = json.dumps(retarget(payloads()[0], tmp_path)).encode()
    assert hook(env, good).returncode == 0
    before = spooled(data)
    for i, payload in enumerate(malformed_payloads()):
        out = hook(env, payload)
        assert out.returncode == 0 and out.stdout == "" and out.stderr == "", (i, out)
        lines = hook_log(data)
        assert len(lines) == i + 1, (i, lines[-3:])
        assert "Traceback" not in lines[-1] and " ERROR " in lines[-1]
    assert spooled(data) == before  # nothing else affected
    log = "\n".join(hook_log(data))
    assert "larger than" in log and "malformed JSON" in log and "must be a string" in log


def test_unknown_arguments_are_one_log_line_and_the_edit_is_kept(tmp_path: Path, env: dict[str, str]) -> None:
    """A settings.json hook line with a typo'd flag: exit 0, nothing on the terminal, the edit
    spooled, and one WARNING naming what was ignored (before: ignored without a word)."""
    out = hook(env, json.dumps(retarget(payloads()[0], tmp_path)).encode(), "--verbsoe", "--config-file", "x.yaml")
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
    assert len(spooled(tmp_path / "data")) == 1
    [line] = hook_log(tmp_path / "data")
    assert " WARNING " in line and "--verbsoe --config-file x.yaml" in line and "--config FILE" in line, line


def test_a_file_path_with_a_nul_character_is_refused_with_one_log_line(tmp_path: Path, env: dict[str, str]) -> None:
    """JSON can carry "\\u0000"; no file is named so, and PostgreSQL cannot store it: refused at the
    door (before: spooled, then failing at the service)."""
    payload = {"tool_name": "Write", "tool_input": {"file_path": str(tmp_path / "a\0b.py"), "content": "x = 1\n"}}
    out = hook(env, json.dumps(payload).encode())
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
    [line] = hook_log(tmp_path / "data")
    assert " ERROR " in line and "NUL character" in line, line
    assert spooled(tmp_path / "data") == []


def test_options_before_the_hook_command_are_the_hooks(tmp_path: Path, env: dict[str, str]) -> None:
    """`pattern-tracker --config F hook` (the order `pattern-tracker --help` shows) went to the
    CLI parser, whose `hook` has nothing to run: `internal error: AttributeError`, exit 1, the edit
    lost. Now the options are the hook's: exit 0, the file's settings apply, the edit is kept."""
    cfg = tmp_path / "pt.yaml"
    log = tmp_path / "elsewhere" / "hook.log"
    cfg.write_text(f"hook:\n  log_file: {log}\n")
    out = run_cli("--config", str(cfg), "hook", env=env, input=b"{not json")
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out
    assert "malformed JSON" in log.read_text() and hook_log(tmp_path / "data") == []  # the file's log_file
    for options in (["--debug"], [f"--config={cfg}", "--debug"]):
        out = run_cli(*options, "hook", env=env, input=json.dumps(retarget(payloads()[0], tmp_path)).encode())
        assert out.returncode == 0 and out.stdout == "" and out.stderr == "", (options, out)
    assert len(spooled(tmp_path / "data")) == 1  # the same edit twice: spooled once, the second unchanged
    assert log.read_text().count("\n") == 1 and hook_log(tmp_path / "data") == []  # --debug: no warning


def test_a_bad_config_is_one_log_line_and_exit_0(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", PATTERN_TRACKING_CACHE_SIZE="lots")
    out = hook(env, json.dumps(payloads()[0]).encode())
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
    [line] = hook_log(tmp_path / "data")
    assert "pattern_tracking.cache_size" in line and "env PATTERN_TRACKING_CACHE_SIZE" in line


def test_denied_files_are_never_captured(tmp_path: Path, env: dict[str, str]) -> None:
    doc = retarget(payloads()[0], tmp_path)
    for name in (".env", ".env.local", "server.pem", "id_rsa"):
        doc["tool_input"]["file_path"] = str(tmp_path / name)
        doc["tool_input"]["content"] = "SECRET=hunter2hunter2\n"
        out = hook(env, json.dumps(doc).encode(), "--verbose")
        assert json.loads(out.stdout)["events"] == 0
    assert spooled(tmp_path / "data") == []


def test_fifty_concurrent_hooks_all_reach_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve(tmp_path / "service") as url:
        env = cli_env(data, PATTERN_TRACKING_API_URL=url)
        procs = []
        for i in range(50):
            doc = retarget(payloads()[0], tmp_path / "proj")
            doc["tool_input"]["file_path"] = str(tmp_path / "proj" / f"m{i % 10}.py")
            doc["tool_input"]["content"] = f"value = {i}\n"
            p = subprocess.Popen([str(BIN), "hook"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env)
            procs.append((p, json.dumps(doc).encode()))
        for p, body in procs:
            p.stdin.write(body)
            p.stdin.close()
        for p, _ in procs:
            assert p.wait(60) == 0 and p.stdout.read() == b"" and p.stderr.read() == b""
        # Drainers the hooks started (one at a time: the lease) deliver everything.
        def delivered() -> int:
            with urllib.request.urlopen(f"{url}/api/pattern-traceability/lineage/query?limit=1000", timeout=5) as r:
                return int(json.loads(r.read())["data"]["total"])

        wait_for(lambda: delivered() == 50, timeout=60, interval=0.3)
    store = Store.open(data)
    try:
        assert Spool(store).size() == 0 and store.verify() == []
    finally:
        store.close()
    assert hook_log(data) == []


def test_service_down_then_back_delivers_after_a_drain(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dead = f"http://127.0.0.1:{free_port()}"
    env = cli_env(data, PATTERN_TRACKING_API_URL=dead, EXPONENTIAL_BACKOFF_BASE_DELAY="0.01")
    doc = retarget(payloads()[0], tmp_path)
    assert hook(env, json.dumps(doc).encode()).returncode == 0
    # The drainer it started finds the service down and leaves the event in the spool.
    wait_for(lambda: (data / "drain.log").exists() and "left in spool 1" in (data / "drain.log").read_text(), timeout=30)
    with serve(tmp_path / "service") as url:
        env_up = cli_env(data, PATTERN_TRACKING_API_URL=url)
        run_cli("circuit", "reset", env=env_up)
        out = run_cli("drain", env=env_up)
        assert out.returncode == 0, out.stderr
        q = run_cli("query", "--file", doc["tool_input"]["file_path"], "--json", env=env_up)
        assert q.returncode == 0 and len(json.loads(q.stdout)) == 1


def test_secrets_in_a_write_never_reach_the_spool_or_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    secrets = [secret for _, _, found in SECRET_CASES for secret in found]
    content = "".join(text for _, text, _ in SECRET_CASES)
    assert len(SECRET_CASES) >= 15 and len(secrets) >= 15
    with serve(tmp_path / "service") as url:
        env = cli_env(data, PATTERN_TRACKING_API_URL=url, PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false")
        doc = retarget(payloads()[0], tmp_path)
        doc["tool_input"]["content"] = content
        out = hook(env, json.dumps(doc).encode(), "--verbose")
        result = json.loads(out.stdout)
        assert result["events"] == 1 and sum(result["redactions"].values()) >= len(SECRET_CASES)
        [event] = spooled(data)
        store_bytes = b"".join(p.read_bytes() for p in data.glob("*.mdb"))
        for secret in secrets:
            assert secret not in event["code"]
            assert secret.encode() not in store_bytes
        assert "[REDACTED:" in event["code"] and "boto3.client" in event["code"]
        assert run_cli("drain", env=env).returncode == 0
        with urllib.request.urlopen(f"{url}/api/pattern-traceability/lineage/query?limit=10", timeout=5) as r:
            body = r.read().decode()
        assert "[REDACTED:" in body
        for secret in secrets:
            assert secret not in body
    assert not any(secret in "\n".join(hook_log(data)) for secret in secrets)


def test_one_drainer_is_started_for_a_burst_and_another_after_it_finished(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve(tmp_path / "service") as url:
        env = cli_env(data, PATTERN_TRACKING_API_URL=url)
        doc = retarget(payloads()[0], tmp_path)

        def write(i: int) -> dict:
            doc["tool_input"]["content"] = f"v = {i}\n"
            return json.loads(hook(env, json.dumps(doc).encode(), "--verbose").stdout)

        first, second = write(1), write(2)
        assert first["drainer"] is True and second["drainer"] is False  # the first one drains both
        wait_for(lambda: (data / "drain.log").exists() and "left in spool 0" in (data / "drain.log").read_text(), timeout=30)
        wait_for(lambda: spooled(data) == [], timeout=10)
        wait_for(lambda: lease_holder(data) is None, what="the drainer releasing its lease as it exits")
        assert write(3)["drainer"] is True  # the lease is free again: the next edit starts one
