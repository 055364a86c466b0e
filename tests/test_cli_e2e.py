"""End to end over real parts: the console script in subprocesses, `serve` on 127.0.0.1, real edits."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from pattern_tracker.core.counters import Counters
from pattern_tracker.core.store import Store
from pattern_tracker.sinks.lineage_store import LineageStore
from tests.clitools import BIN, cli_env, run_cli, serve, stop, wait_for
from tests.threaded_app import ThreadedApp

FAST_WATCH = {"PATTERN_TRACKER__SOURCES__WATCH__STEP_MS": "10", "PATTERN_TRACKER__SOURCES__WATCH__DEBOUNCE_MS": "10"}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def file_versions(base: str, path: Path) -> list[dict]:
    q = urllib.parse.urlencode({"file_path": str(path), "limit": 100})
    return get_json(f"{base}/api/pattern-traceability/lineage/query?{q}")["data"]["patterns"]


def test_watch_to_serve_builds_a_three_node_chain(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    target = Path(os.path.realpath(proj)) / "app.py"
    target.write_text("def f():\n    return 1\n")
    with serve(tmp_path / "service") as url:
        watcher = subprocess.Popen([str(BIN), "watch", str(proj)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   env=cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=url, **FAST_WATCH))
        try:
            wait_for(lambda: len(file_versions(url, target)) == 1, timeout=15)
            target.write_text("def f():\n    return 2\n")
            wait_for(lambda: len(file_versions(url, target)) == 2)
            target.write_text("def f(x):\n    return x\n")
            nodes = wait_for(lambda: (n := file_versions(url, target)) and len(n) == 3 and n)
        finally:
            assert stop(watcher) == 0
        assert [n["event_type"] for n in nodes] == ["pattern_created", "pattern_modified", "pattern_modified"]
        assert [n["generation"] for n in nodes] == [1, 2, 3]
        ancestry = get_json(f"{url}/api/pattern-traceability/lineage/{nodes[2]['pattern_id']}?query_type=ancestry")["data"]
        assert [a["ancestor_pattern_id"] for a in ancestry["ancestors"]] == [n["pattern_id"] for n in reversed(nodes)]
        assert [a["generation"] for a in ancestry["ancestors"]] == [3, 2, 1]
        # The CLI reads the same chain through the service (the real service has no query-by-file:
        # the client would fall back to its own version heads).
        out = run_cli("query", "--file", str(target), env=cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=url))
        assert out.returncode == 0 and "3 version(s)" in out.stdout, out.stderr


def test_an_edit_shows_in_query_file_within_a_second(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    target = Path(os.path.realpath(proj)) / "notes.md"
    target.write_text("# v1\n")
    env = cli_env(tmp_path / "data")  # default watch timings: what `make run` uses
    watcher = subprocess.Popen([str(BIN), "watch", str(proj)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: "1 version(s)" in run_cli("query", "--file", str(target), env=env).stdout, timeout=15)
        target.write_text("# v2\n")
        written = time.monotonic()
        out = wait_for(lambda: (o := run_cli("query", "--file", str(target), env=env).stdout) and "v2 " in o and o, timeout=5)
        elapsed = time.monotonic() - written
    finally:
        assert stop(watcher) == 0
    assert "2 version(s)" in out and "pattern_modified" in out
    # Includes the start-up of a fresh `query` process per poll.
    assert elapsed < 2.0, f"took {elapsed:.2f}s"


class HangingService(ThreadedApp):
    """The real `serve` app over LMDB, in a thread, that can be told to hang every delivery."""

    def __init__(self, data_dir: Path) -> None:
        self.store = Store.open(data_dir)
        self.lineage = LineageStore(self.store)
        self.hang = threading.Event()
        self.delay = 0.0  # seconds every POST takes
        self.requests = 0
        super().__init__()

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        if request.method == "POST":
            self.requests += 1
            while self.hang.is_set():
                await asyncio.sleep(0.05)
            if self.delay:
                await asyncio.sleep(self.delay)
        return None

    def make_app(self) -> web.Application:
        from pattern_tracker.service.serve import build_app

        return build_app(self.lineage, fault_hook=self._fault)

    def __exit__(self, *exc: object) -> None:
        self.hang.clear()
        super().__exit__(*exc)
        self.store.close()


def test_sigterm_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    records = b"".join(json.dumps({"file_path": f"/w/m{i}.py", "code": f"x = {i}\n"}).encode() + b"\n" for i in range(300))
    with HangingService(tmp_path / "service") as svc:
        env = cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=svc.url,
                      PATTERN_TRACKER__PATTERN_TRACKING__SHUTDOWN_TIMEOUT="1",
                      PATTERN_TRACKER__API__TIMEOUTS__TOTAL="60", PATTERN_TRACKER__API__TIMEOUTS__READ="60")
        svc.hang.set()
        proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, env=env)
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(records)
        proc.stdin.flush()  # stdin stays open: the run would go on for ever
        wait_for(lambda: svc.requests > 0, timeout=15)
        # Every record read (and spooled) before the signal: the spool's "entered" counter says so.
        client = Store.open(tmp_path / "client")
        try:
            wait_for(lambda: Counters(client).totals().get("spool.entered", 0) >= 300, timeout=15,
                     what="the 300 records read into the spool")
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        err = proc.stderr.read().decode()
        proc.stdin.close()
        assert code == 0, err
        read = int(re.search(r"done: read (\d+)", err).group(1))
        left = int(re.search(r"left in spool (\d+)", err).group(1))
        assert read == 300 and left > 0, err
        assert svc.lineage.count() < 300
        # Restart with the service answering again: the backlog goes first.
        svc.hang.clear()
        again = run_cli("run", "--source", "stdin", env=env, input=b"")
        assert again.returncode == 0, again.stderr
        assert "left in spool 0" in again.stderr
        assert svc.lineage.count() == 300


def test_kill_9_mid_delivery_then_restart_loses_nothing(tmp_path: Path) -> None:
    records = b"".join(json.dumps({"file_path": f"/k/f{i % 30}.py", "code": f"v = {i}\n"}).encode() + b"\n"
                       for i in range(400))
    with HangingService(tmp_path / "service") as svc:
        svc.delay = 0.05
        env = cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=svc.url,
                      PATTERN_TRACKER__PATTERN_TRACKING__BATCH_SIZE="10")
        proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], stdin=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        assert proc.stdin is not None
        proc.stdin.write(records)
        proc.stdin.flush()
        client = Store.open(tmp_path / "client")
        try:
            # Mid-delivery, once every record has been read (is in the spool or on the server).
            # (the spool's "entered" counter: every record the process read is in it, once)
            wait_for(lambda: svc.requests >= 5 and Counters(client).totals().get("spool.entered", 0) >= 400, timeout=15)
        finally:
            client.close()
        proc.kill()
        proc.wait(10)
        proc.stdin.close()
        delivered_before = svc.lineage.count()
        assert delivered_before < 400
        again = run_cli("run", "--source", "stdin", env=env, input=b"")
        assert again.returncode == 0, again.stderr
        assert "left in spool 0" in again.stderr, again.stderr
        nodes = svc.lineage.query(None, limit=10_000)
        # Every version the killed process read is on the server once, in whole chains.
        assert len(nodes) == 400 == len({n["pattern_id"] for n in nodes})
        for i in range(30):
            chain = sorted((n for n in nodes if n["file_path"] == f"/k/f{i}.py"), key=lambda n: n["generation"])
            assert [int(n["pattern_version"]) for n in chain] == list(range(1, len(chain) + 1))
        verify = subprocess.run([sys.executable, "-c", "import sys; from pattern_tracker.core.store import Store; "
                                 "print(Store.open(sys.argv[1]).verify())", str(tmp_path / "client")],
                                capture_output=True, text=True)
        assert verify.stdout.strip() == "[]", verify


@pytest.mark.parametrize(
    ("yaml_text", "env", "fragments"),
    [
        ("resilience:\n  retry:\n    max_attempts: -1\n", {}, ["resilience.retry.max_attempts", "-1", "bad.yaml:3", ">= 1"]),
        ("pattern_tracking:\n  cache_sise: 5\n", {}, ["unknown key pattern_tracking.cache_sise", "bad.yaml:2"]),
        ("api: [1, 2\n", {}, ["malformed YAML", "bad.yaml"]),
        ("", {"PATTERN_TRACKING_CACHE_SIZE": "lots"}, ["pattern_tracking.cache_size", "'lots'", "env PATTERN_TRACKING_CACHE_SIZE"]),
        ("", {"ALERTING_THRESHOLD": "1.5"}, ["monitoring.alerting.threshold", "env ALERTING_THRESHOLD", "from 0 to 1"]),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, yaml_text: str, env: dict[str, str], fragments: list[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    for args in (["--config", str(cfg), "config", "show"], ["run", "--config", str(cfg)]):
        out = run_cli(*args, env=cli_env(tmp_path / "d", **env))
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        for fragment in fragments:
            assert fragment in lines[0]
        assert "Traceback" not in out.stderr


def test_config_validate_and_show_origins(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("pattern_tracking:\n  batch_size: 7\n")
    env = cli_env(tmp_path / "d", CIRCUIT_BREAKER_FAILURE_THRESHOLD="9")
    assert run_cli("config", "validate", str(cfg), env=env).returncode == 0
    shown = run_cli("config", "show", "--config", str(cfg), env=env).stdout
    assert re.search(rf"pattern_tracking.batch_size = 7 +# {re.escape(str(cfg))}:2", shown)
    assert re.search(r"resilience.circuit_breaker.failure_threshold = 9 +# env CIRCUIT_BREAKER_FAILURE_THRESHOLD", shown)
    assert run_cli("config", "validate", str(tmp_path / "missing.yaml"), env=env).returncode == 2


def test_bad_stdin_records_each_get_one_line_and_the_rest_go_on(tmp_path: Path) -> None:
    lines = [
        b'{"file_path": "/s/ok.py", "code": "a = 1"}',
        b"{not json",
        b"[1, 2]",
        b'{"file_path": 3, "code": "x"}',
        b'{"file_path": "/s/x.py", "code": "x", "surprise": 1}',
        b'{"event_id": "e", "event_type": "pattern_created"}',
        b'{"tool_name": "Write", "tool_input": {"file_path": "/s/w.py"}}',
        b"\xff\xfe binary",
        b'{"file_path": "/s/ok2.py", "code": "b = 2"}',
    ]
    out = run_cli("run", "--source", "stdin", env=cli_env(tmp_path / "d"), input=b"\n".join(lines) + b"\n")
    assert out.returncode == 3
    errors = [l for l in out.stderr.splitlines() if l.startswith("stdin line")]
    assert [int(re.match(r"stdin line (\d+):", e).group(1)) for e in errors] == [2, 3, 4, 5, 6, 7, 8]
    assert "unknown field `surprise`" in errors[3] and "at `file_path`" in errors[2]
    assert "Traceback" not in out.stderr and "a = 1" not in out.stderr
    assert "delivered 2" in out.stderr
    q = run_cli("query", "--file", "/s/ok2.py", env=cli_env(tmp_path / "d"))
    assert q.returncode == 0 and "1 version(s)" in q.stdout


def test_half_a_surrogate_pair_is_named_not_called_truncated(tmp_path: Path) -> None:
    """msgspec calls a whole line with a lone \\ud800 escape "truncated"; the line says what it is."""
    lines = [b'{"file_path": "/s/s.py", "code": "x = \\\\ud800 + \\ud800"}', b'{"file_path": "/s/t.py", "code": "y = 2"']
    out = run_cli("run", "--source", "stdin", env=cli_env(tmp_path / "d"), input=b"\n".join(lines) + b"\n")
    assert out.returncode == 3
    errors = [l for l in out.stderr.splitlines() if l.startswith("stdin line")]
    assert errors == ["stdin line 1: malformed JSON: lone UTF-16 surrogate escape \\ud800 at byte 48 (half of a pair: not a character)",
                      "stdin line 2: malformed JSON: Input data was truncated"], out.stderr


def test_cli_usage_errors_and_version(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "d")
    assert run_cli("--version", env=env).stdout.startswith("pattern-tracker ")
    assert run_cli("query", env=env).returncode == 2
    assert run_cli("frobnicate", env=env).returncode == 2
    missing = run_cli("watch", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    for cmd in (["run"], ["watch"], ["serve"], ["query"], ["config"], ["config", "show"], ["config", "validate"]):
        helped = run_cli(*cmd, "--help", env=env)
        assert helped.returncode == 0 and "usage:" in helped.stdout
    unknown = run_cli("query", "deadbeef-v1-00000000", env=env)
    assert unknown.returncode == 1 and "not found" in unknown.stderr


def _commands(parser, path: tuple[str, ...] = ()):
    """Every runnable ``pattern-tracker`` command (the words before its own arguments), from the parser itself."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path
        return
    seen = set()
    for name, sub in subs[0].choices.items():
        if id(sub) not in seen:  # an alias (spool) is the same parser as its command (cache)
            seen.add(id(sub))
            yield from _commands(sub, (*path, name))


def test_every_usage_error_is_one_line_naming_its_command(tmp_path: Path) -> None:
    """argparse prints a usage block (2-5 lines) before its error; ours is one line that names the
    command given the bad argument, exit 2, for every command the parser has (`hook` always exits 0)."""
    from pattern_tracker.cli.app import build_parser

    env = cli_env(tmp_path / "d")
    commands = [c for c in _commands(build_parser()) if c != ("hook",)]
    assert len(commands) > 20 and ("cache", "quarantine", "list") in commands
    for words in commands:
        out = run_cli(*words, "--no-such-flag", env=env)
        lines = out.stderr.splitlines()
        assert out.returncode == 2 and len(lines) == 1, (words, out.stderr)
        assert lines[0].startswith(f"pattern-tracker {' '.join(words)}: error: "), (words, lines[0])
        assert "--no-such-flag" in lines[0] or "required" in lines[0], lines[0]
    for argv, says in ((["replay"], "replay: error: the following arguments are required: ARCHIVE"),
                       ([], "pattern-tracker: error: the following arguments are required: COMMAND"),
                       (["frobnicate"], "invalid choice: 'frobnicate'")):
        out = run_cli(*argv, env=env)
        assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and says in out.stderr, out.stderr


def _big_config(tmp_path: Path) -> Path:
    """A config whose `config show` is ~150 KB: more than a pipe holds, so the writer meets the closed end."""
    path = tmp_path / "big.yaml"
    path.write_text("sources:\n  watch:\n    ignore:\n" + "".join(f'      - "generated-{i:05d}-*.tmp"\n' for i in range(6000)))
    return path


@pytest.mark.parametrize("argv", [
    ["config", "show", "--config", "{big}"],  # one big print: failed with "internal error: BrokenPipeError"
    ["status", "--watch", "--json", "--interval", "0.05"],  # endless output: the same path for every command
], ids=["config-show", "status-watch"])
def test_reader_closing_stdout_early_ends_quietly_with_141(tmp_path: Path, argv: list[str]) -> None:
    """`pattern-tracker … | head -1`: no message, exit 141 (docs/cli.md#exit-codes), like a tool ended by SIGPIPE."""
    args = [a.format(big=_big_config(tmp_path)) for a in argv]
    proc = subprocess.Popen([str(BIN), *args], env=cli_env(tmp_path / "d"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # the reader takes one line and goes away, as `head -1` does
    proc.stdout.close()
    try:
        _, err_bytes = proc.communicate(timeout=30)  # stdout is closed: only stderr is read
    finally:
        stop(proc)
    rc, err = proc.returncode, err_bytes.decode()
    assert rc == 141, (rc, err)
    assert err == "", err  # no "internal error", no "Exception ignored … BrokenPipeError", no traceback


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = run_cli("query", "--file", "/x.py", env=cli_env(blocker / "sub"))
    assert out.returncode == 1 and "data directory" in out.stderr and "Traceback" not in out.stderr


def test_watch_never_captures_denied_files_and_redacts_secrets(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    root = Path(os.path.realpath(proj))
    (root / ".env").write_text("DB_PASSWORD=correct-horse-battery-9\n")
    (root / "settings.py").write_text('API_TOKEN = "ghp_' + "a1B2c3D4e5F6g7H8i9J0" * 2 + 'kL9m"\nDEBUG = True\n')
    env = cli_env(tmp_path / "data", **FAST_WATCH)
    watcher = subprocess.Popen([str(BIN), "watch", str(proj)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    try:
        out = wait_for(lambda: (q := run_cli("query", "--file", str(root / "settings.py"), "--json", env=env)).returncode == 0
                       and q.stdout, timeout=15)
    finally:
        assert stop(watcher) == 0
    [node] = json.loads(out)
    assert "[REDACTED:github_token]" in node["pattern_data"]["code"] and "DEBUG = True" in node["pattern_data"]["code"]
    assert "a1B2c3D4e5F6g7H8i9J0" not in out
    denied = run_cli("query", "--file", str(root / ".env"), env=env)
    assert denied.returncode == 1 and "no versions" in denied.stderr
    store_bytes = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("*.mdb"))
    assert b"correct-horse-battery-9" not in store_bytes and b"a1B2c3D4e5F6g7H8i9J0" not in store_bytes


def test_an_event_refused_by_validation_counts_as_dead_lettered_in_metrics(tmp_path: Path) -> None:
    """A full PatternEvent the pipeline's validation refuses (a modification without a parent)
    becomes a dead letter: the run's summary and the dead letter said so, but `metrics` (and
    `status`, the dashboard) read events.dead_lettered, which only the service's refusals bumped: 0."""
    import msgspec

    from pattern_tracker.usecases.archive_gen import generate

    event = msgspec.to_builtins(next(iter(generate(1, 1, 7))))
    event.update(event_type="pattern_modified", parent_pattern_ids=[])
    env = cli_env(tmp_path / "d")
    out = run_cli("run", "--source", "stdin", "--json", env=env, input=msgspec.json.encode(event) + b"\n")
    assert out.returncode == 0 and json.loads(out.stdout)["dead_lettered"] == 1, (out.stdout, out.stderr)
    metrics = json.loads(run_cli("metrics", "--json", env=env).stdout)
    assert metrics["events"]["dead_lettered"] == 1 == metrics["dead_letter"]["size"], metrics


def test_a_drain_that_leaves_events_says_why(tmp_path: Path) -> None:
    """`drain` exit 4 with the service up and the circuit closed said only 'N event(s) could not be
    delivered now and stay in the spool'; the reason (here: the service lacks the event's parent)
    was in the log lines alone. Now the line says it, and --json carries spilled_by_reason."""
    import msgspec

    from pattern_tracker.usecases.archive_gen import generate

    first, second = (msgspec.to_builtins(ev) for ev in generate(2, 1, 7))
    assert second["parent_pattern_ids"] == [first["pattern_id"]]
    with serve(tmp_path / "service") as url:
        env = cli_env(tmp_path / "d", PATTERN_TRACKING_API_URL=url)
        out = run_cli("run", "--source", "stdin", env=env, input=msgspec.json.encode(second) + b"\n")
        assert out.returncode == 0 and "left in spool 1" in out.stderr, out.stderr
        drained = run_cli("drain", env=env)
        as_json = run_cli("drain", "--json", env=env)
    assert drained.returncode == 4, drained.stderr
    assert ("1 event(s) could not be delivered now and stay in the spool (1: the service does not know their "
            "parent yet; the log lines say more)") in drained.stdout + drained.stderr, (drained.stdout, drained.stderr)
    assert json.loads(as_json.stdout)["spilled_by_reason"] == {"parent_missing": 1}, as_json.stdout
