"""The reliability scenarios (docs/reliability.md) as functions taking their sizes, with the
strategies, checks and environments they share: tests/test_reliability.py runs them small
(`make test`), tests/soak/soak_reliability.py large (`make soak`).

1. crash: `replay ARCHIVE` to `serve`, SIGKILLed three times at seeded random points and restarted;
2. chaos: `run --source stdin` against `serve --chaos` (every fault type), drained until empty;
3. fuzzing: hook stdin, stdin JSON lines, the service's answers to HttpSink;
4. disk pressure: a tiny LMDB map (growth, then one clear error) and a tiny spool bound (counted drops).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pattern_tracker.core.store import Store
from pattern_tracker.model.events import PatternEvent, build_event
from pattern_tracker.sinks.lineage_store import LineageStore
from tests.clitools import BIN, cli_env, free_port, run_cli, stop, wait_for

ROOT = Path(__file__).resolve().parent.parent
# Fast retries: the scenarios are about loss, not about waiting.
FAST_RETRY = {"EXPONENTIAL_BACKOFF_BASE_DELAY": "0.02", "EXPONENTIAL_BACKOFF_MAX_DELAY": "0.2"}


# ---------------------------------------------------------------------------------------------
# Common to the scenarios


def verify_in_subprocess(path: Path) -> list[str]:
    """Store.verify() of ``path`` in a fresh process (no handle of ours in the way)."""
    out = subprocess.run([sys.executable, "-c", "import json, sys; from pattern_tracker.core.store import Store; "
                          "s = Store.open(sys.argv[1]); print(json.dumps(s.verify())); s.close()", str(path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def cli_json(*args: str, env: dict[str, str]) -> dict[str, Any]:
    out = run_cli(*args, "--json", env=env)
    assert out.returncode == 0, (args, out.stderr)
    return json.loads(out.stdout)


def server_nodes(service_dir: Path) -> list[dict[str, Any]]:
    """Every node the service's embedded store holds (read after `serve` stopped)."""
    store = Store.open(service_dir)
    try:
        lineage = LineageStore(store)
        return lineage.query(None, limit=lineage.count() + 10)
    finally:
        store.close()


@contextlib.contextmanager
def serve_proc(data_dir: Path, *extra: str, log: Path, port: int = 0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`pattern-tracker serve --port PORT` (default 0: any) with its stderr in ``log``."""
    fh = open(log, "wb")
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), *extra], env=cli_env(data_dir), stderr=fh,
                            stdout=subprocess.DEVNULL)
    try:
        m = wait_for(lambda: proc.poll() is None and re.search(r"serving Phase 4 API on (http://\S+)", log.read_text()),
                     timeout=30)
        yield m.group(1), proc
    finally:
        stop(proc)
        fh.close()


# ---------------------------------------------------------------------------------------------
# 1. Crash: kill -9 at random points during `replay ARCHIVE`, restart, nothing lost


def crash_replay_scenario(tmp_path: Path, events: int, files: int, kills: int = 3, seed: int = 1,
                          timeout: float = 120) -> dict[str, Any]:
    arch = tmp_path / "archive"
    gen = run_cli("archive", "generate", "--events", str(events), "--files", str(files), "--seed", str(seed), str(arch),
                  env=cli_env(tmp_path / "gen"), timeout=timeout)
    assert gen.returncode == 0, gen.stderr
    from pattern_tracker.model.archive import Archive

    archive = Archive(str(arch))
    try:
        expected = {ev.pattern_id for chunk in archive.chunks(5000) for ev in chunk}
    finally:
        archive.close()
    assert len(expected) == events
    service, client = tmp_path / "service", tmp_path / "client"
    rng = random.Random(seed)
    # Kill points: the server holds a seeded random share of the archive (a restart starts again
    # from the archive's first event, so later kills need higher marks), plus a random jitter.
    marks = sorted(rng.uniform(0.05, 0.9) * events for _ in range(kills))
    killed: list[int] = []
    with serve_proc(service, log=tmp_path / "serve.log") as (url, _):
        env = cli_env(client, PATTERN_TRACKING_API_URL=url, **FAST_RETRY)
        seen = Store.open(service)  # read-only polling of the service's store (LMDB: many processes)
        try:
            lineage = LineageStore(seen)
            for i, mark in enumerate(marks):
                with open(tmp_path / f"replay-{i}.log", "wb") as log:
                    proc = subprocess.Popen([str(BIN), "replay", str(arch), "--json"], env=env, stdout=log, stderr=log)
                    try:
                        wait_for(lambda: proc.poll() is not None or lineage.count() >= mark, timeout=timeout, interval=0.005)
                        time.sleep(rng.uniform(0, 0.05))
                        if proc.poll() is None:
                            proc.send_signal(signal.SIGKILL)
                            killed.append(lineage.count())
                    finally:
                        proc.wait(30)
        finally:
            seen.close()
        assert len(killed) == kills, f"a replay finished before its kill point: {killed} {marks}"
        assert killed[0] < events, killed
        final = run_cli("replay", str(arch), "--json", env=env, timeout=timeout)
        assert final.returncode == 0, final.stderr
        summary = json.loads(final.stdout)
        stats = cli_json("cache", "stats", env=env)
    assert summary["read"] == events and summary["left_in_spool"] == 0 and summary["dead_lettered"] == 0, summary
    assert stats["size"] == 0 and stats["dead_letter"] == 0, stats
    nodes = server_nodes(service)
    ids = [n["pattern_id"] for n in nodes]
    assert len(ids) == events, (len(ids), events)
    assert set(ids) == expected  # every event of the archive, once, nothing else
    for path in (client, service):
        assert verify_in_subprocess(path) == [], path
    return {"killed_at": killed, "final": summary}


# ---------------------------------------------------------------------------------------------
# 2. Chaos: every fault type; the server ends with exactly what was produced, counters reconcile

# One pass of ~6.5 s through every fault `serve --chaos` knows, then a healthy service (so the
# drains after the feed finish quickly). The outages have phases of their own; the per-request
# faults share one phase, so that none of them depends on the client being active (not backing
# off, circuit closed) during a short phase of its own.
CHAOS_SCHEDULE = """\
seed: 5
repeat: false
phases:
  - name: calm
    duration: 1
  - name: hang
    duration: 1
    faults: {outage: hang}
  - name: mixed
    duration: 2
    faults:
      errors: {500: 0.06, 502: 0.05, 503: 0.06, 504: 0.05}
      rate_limit: {probability: 0.08, retry_after: 1}
      reset: 0.08
      garbage: 0.08
      latency: {probability: 0.2, seconds: 0.3}
      slow_body: {probability: 0.2, bytes_per_second: 2000}
  - name: mixed-date
    duration: 1.5
    faults:
      errors: {500: 0.06, 502: 0.05, 503: 0.06, 504: 0.05}
      rate_limit: {probability: 0.1, retry_after: 1, retry_after_date: true}
      reset: 0.08
      garbage: 0.08
  - name: refused
    duration: 0.75
    faults: {outage: refused}
"""
# What serve counts per lineage request (latency and slow bodies are answers that pass; a refused
# connection never becomes a request): each must have happened at least once.
CHAOS_ANSWERS = ("http_500", "http_502", "http_503", "http_504", "http_429", "reset", "garbage", "hang")
# And what the client must have seen of them (failed calls by class in `metrics --json`; a 429 is
# "the service working", not a failed call: it shows in the server's count above).
CHAOS_CLIENT_ERRORS = ("http_500", "http_502", "http_503", "http_504", "timeout", "connection", "bad_response")


def chaos_client_env(data_dir: Path, url: str) -> dict[str, str]:
    return cli_env(
        data_dir, PATTERN_TRACKING_API_URL=url, PATTERN_TRACKING_CACHE_SIZE="1000000",
        EXPONENTIAL_BACKOFF_BASE_DELAY="0.05", EXPONENTIAL_BACKOFF_MAX_DELAY="1",
        CIRCUIT_BREAKER_FAILURE_THRESHOLD="10", CIRCUIT_BREAKER_RECOVERY_TIMEOUT="1",
        PATTERN_TRACKER__PATTERN_TRACKING__BATCH_SIZE="10",
        PATTERN_TRACKER__API__TIMEOUTS__CONNECT="0.5", PATTERN_TRACKER__API__TIMEOUTS__READ="0.6",
        PATTERN_TRACKER__API__TIMEOUTS__TOTAL="1.5",
    )


def holds_drain_lease(data_dir: Path, pid: int) -> bool:
    """True once process ``pid`` runs its pipeline over ``data_dir`` (it holds the drain lease)."""
    from pattern_tracker.core.lease import DrainLease

    if not (data_dir / "data.mdb").exists():
        return False
    store = Store.open(data_dir)
    try:
        holder = DrainLease(store).holder(time.time())
    finally:
        store.close()
    return holder is not None and holder.pid == pid


def chaos_scenario(tmp_path: Path, events: int, files: int, feed_seconds: float, schedule: str = CHAOS_SCHEDULE,
                   seed: int = 5, drain_deadline: float = 120) -> dict[str, Any]:
    """``events`` over ``feed_seconds`` is the feed's rate; the feed itself lasts as long as serve's
    schedule (until serve logs that it finished), so about ``events`` are produced."""
    sched = tmp_path / "chaos.yaml"
    sched.write_text(schedule)
    rng = random.Random(seed)
    records: list[tuple[str, str]] = []

    def record(i: int) -> tuple[str, str]:
        return f"/chaos/m{i % files}.py", f"value_{i} = {rng.randrange(10**9)}  # {i}\n"

    service, client = tmp_path / "service", tmp_path / "client"
    serve_log = tmp_path / "serve.log"
    # The schedule's clock starts with serve. So the client starts first and is waited for (it holds
    # its drain lease: its pipeline runs; with nothing to deliver it calls nobody), then serve on
    # the port the client was given, and the feed follows serve's own phase log: however slowly
    # the processes start, every phase meets a running client with events to deliver.
    port = free_port()
    env = chaos_client_env(client, f"http://127.0.0.1:{port}")
    err = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([str(BIN), "run", "--source", "stdin"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=err, env=env)
    assert proc.stdin is not None
    try:
        wait_for(lambda: proc.poll() is not None or holds_drain_lease(client, proc.pid), timeout=30,
                 what="the client's pipeline running")
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
        with serve_proc(service, "--chaos", str(sched), "--seed", str(seed), log=serve_log, port=port) as (url, _):
            assert url == f"http://127.0.0.1:{port}"
            # Paced (on purpose: the producer's rate), for as long as the schedule runs.
            per_tick = max(1, events // max(1, int(feed_seconds / 0.05)))
            feed_deadline = time.monotonic() + 10 * feed_seconds + 60
            while "chaos: schedule finished" not in serve_log.read_text():
                assert time.monotonic() < feed_deadline, serve_log.read_text()[-2000:]
                chunk = [record(len(records) + k) for k in range(per_tick)]
                records.extend(chunk)
                proc.stdin.write(b"".join(json.dumps({"file_path": p, "code": c}).encode() + b"\n" for p, c in chunk))
                proc.stdin.flush()
                time.sleep(0.05)
            proc.stdin.close()
            code = proc.wait(drain_deadline)
            err.close()
            assert code == 0, (tmp_path / "run.log").read_text()[-2000:]
            # Drain until the spool is empty (the circuit may be open, the service may be hanging).
            deadline = time.monotonic() + drain_deadline
            drains = 0
            while (size := cli_json("cache", "stats", env=env)["size"]) > 0:
                assert time.monotonic() < deadline, f"{size} event(s) still spooled"
                drains += 1
                out = run_cli("drain", "--until-empty", env=env, timeout=drain_deadline)
                assert out.returncode in (0, 4), out.stderr
            stats = cli_json("cache", "stats", env=env)
            metrics = cli_json("metrics", env=env)
    finally:
        if proc.poll() is None:
            stop(proc)
        err.close()
    fed = len(records)  # what the feed produced
    injected = re.search(r"chaos: lineage requests answered: (.*)", serve_log.read_text())
    assert injected, serve_log.read_text()[-2000:]
    answered = {k: int(v) for k, v in (item.rsplit(" ", 1) for item in injected.group(1).split(", "))}
    missing = [f for f in CHAOS_ANSWERS if not answered.get(f)]
    assert not missing, f"faults never injected: {missing} ({answered})"
    phases = set(re.findall(r"chaos: phase '([^']+)'", serve_log.read_text()))
    assert phases >= set(re.findall(r"- name: (\S+)", schedule)), phases
    seen = metrics["errors"]
    missing = [e for e in CHAOS_CLIENT_ERRORS if not seen.get(e, {}).get("count")]
    assert not missing, f"the client never saw: {missing} ({seen})"

    # Counters: produced = delivered + dead-lettered + expired + dropped, the spool empty.
    produced = stats["entered"]
    delivered = metrics["events"]["delivered"] + metrics["events"]["already_existed"]
    dead = metrics["events"]["dead_lettered"]
    assert produced == fed, stats
    assert stats["acked"] == delivered, (stats, metrics["events"])
    assert produced == delivered + dead + stats["expired"] + stats["dropped"], (stats, metrics["events"])
    assert stats["size"] == 0 and dead == 0 == stats["dead_letter"] and stats["expired"] == 0 and stats["dropped"] == 0
    # The server: exactly the distinct events produced, as whole chains.
    nodes = server_nodes(service)
    assert len(nodes) == fed == len({n["pattern_id"] for n in nodes})
    chains: dict[str, list[str]] = {}
    for path, code in records:
        chains.setdefault(path, []).append(code)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for n in nodes:
        by_file.setdefault(n["file_path"], []).append(n)
    assert set(by_file) == set(chains)
    for path, codes in chains.items():
        got = sorted(by_file[path], key=lambda n: int(n["pattern_version"]))
        assert [int(n["pattern_version"]) for n in got] == list(range(1, len(codes) + 1))
        assert [n["pattern_data"]["code"] for n in got] == codes
    for path in (client, service):
        assert verify_in_subprocess(path) == [], path
    return {"answered": answered, "drains": drains, "metrics": metrics, "stats": stats}


# ---------------------------------------------------------------------------------------------
# 3a. Fuzzing the hook's stdin


def _hook_env(data: Path) -> dict[str, str]:
    return cli_env(data, PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false")


# A log line that is an internal error rather than a described problem (StoreError is a described one).
_INTERNAL = re.compile(r"hook\[\d+\]: (?!StoreError)[A-Za-z_]\w*(Error|Exception|Exit|Interrupt)\b")


def run_hook_in_process(payload: bytes, env: dict[str, str]) -> tuple[int, str]:
    """pattern_tracker.hook.main with ``payload`` as stdin, ``env`` as the whole environment."""
    from pattern_tracker.hook import main

    out = io.StringIO()
    with tempfile.TemporaryFile() as stdin:
        stdin.write(payload)
        stdin.seek(0)
        with mock.patch.object(sys, "stdin", stdin), mock.patch.dict(os.environ, env, clear=True), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main([])
    return code, out.getvalue()


def _spool_raw(data: Path) -> list[bytes]:
    if not (data / "data.mdb").exists():
        return []
    store = Store.open(data)
    try:
        return [raw for _, raw in store.scan_seq("spool", 0, 1_000_000)]
    finally:
        store.close()


class HookFuzz:
    """One data directory for many examples; checks the contract after each payload."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.env = _hook_env(self.data)
        (root / "proj").mkdir(parents=True, exist_ok=True)

    def log_lines(self) -> list[str]:
        path = self.data / "hook.log"
        # Lines as a reader of the log sees them: split at "\n" only.
        return path.read_text(errors="replace").rstrip("\n").split("\n") if path.exists() and path.stat().st_size else []

    def check(self, payload: bytes, subprocess_: bool = False) -> None:
        from pattern_tracker.model.spool_codec import decoder
        from pattern_tracker.operators.validate import validate_event

        before_log, before = len(self.log_lines()), _spool_raw(self.data)
        if subprocess_:
            done = run_cli("hook", env=self.env, input=payload, timeout=60)
            code, output = done.returncode, done.stdout + done.stderr
        else:
            code, output = run_hook_in_process(payload, self.env)
        assert code == 0 and output == "", (payload[:200], code, output)
        new_lines = self.log_lines()[before_log:]
        assert len(new_lines) <= 1, new_lines
        for line in new_lines:
            assert "Traceback" not in line and not _INTERNAL.search(line), line
        after = _spool_raw(self.data)
        assert after[:len(before)] == before  # nothing queued earlier was touched
        added = after[len(before):]
        assert len(added) <= 1, (payload[:200], len(added))
        for raw in added:  # a valid event, or nothing
            entry = decoder.decode(raw)
            assert isinstance(entry.event, PatternEvent)
            assert validate_event(entry.event) is None, validate_event(entry.event)


_texts = st.text(max_size=40)
_junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), _texts,
                  st.lists(st.integers(), max_size=3), st.dictionaries(_texts, st.integers(), max_size=2))


def _payloads(root: Path) -> st.SearchStrategy[Any]:
    paths = st.one_of(st.sampled_from([str(root / "proj" / n) for n in ("a.py", "b.ts", "c.ipynb", ".env", "dir")]),
                      _texts, _junk)
    code = st.one_of(st.text(max_size=200), _junk)
    edit = st.fixed_dictionaries({}, optional={"old_string": code, "new_string": code, "replace_all": _junk})
    tool_input = st.one_of(
        st.fixed_dictionaries({}, optional={"file_path": paths, "content": code, "old_string": code, "new_string": code,
                                            "replace_all": st.one_of(st.booleans(), _junk),
                                            "edits": st.one_of(st.lists(edit, max_size=3), _junk),
                                            "notebook_path": paths, "new_source": code, "cell_id": st.one_of(_texts, _junk),
                                            "edit_mode": st.one_of(st.sampled_from(["replace", "insert", "delete"]), _junk)}),
        _junk)
    tool_response = st.one_of(
        st.fixed_dictionaries({}, optional={"originalFile": code, "originalFileContents": code, "filePath": paths,
                                            "success": _junk}), _junk)
    return st.fixed_dictionaries(
        {"tool_name": st.one_of(st.sampled_from(["Write", "Edit", "MultiEdit", "NotebookEdit", "Bash", "Read"]), _junk)},
        optional={"tool_input": tool_input, "tool_response": tool_response, "session_id": st.one_of(_texts, _junk),
                  "tool_use_id": st.one_of(_texts, _junk), "hook_event_name": st.sampled_from(["PostToolUse", "Stop"]),
                  "cwd": _junk, "transcript_path": _junk})


def hook_fuzz_scenario(tmp_path: Path, examples: int, subprocess_samples: int = 2) -> None:
    fuzz = HookFuzz(tmp_path)
    (tmp_path / "proj" / "dir").mkdir()
    (tmp_path / "proj" / "a.py").write_text("x = 1\n")
    (tmp_path / "proj" / "b.ts").write_bytes(b"\x00\x01binary\xff")
    # The settings cache and the store exist before the examples: each one measures the hook alone.
    fuzz.check(b"{}")

    runs = settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)

    @runs
    @given(st.binary(max_size=300))
    def random_bytes(payload: bytes) -> None:
        fuzz.check(payload)

    @runs
    @given(_payloads(tmp_path), st.booleans())
    def shaped(doc: dict[str, Any], ascii_only: bool) -> None:
        fuzz.check(json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))

    random_bytes()
    shaped()
    # Deep nesting, lone surrogates, control characters, explicitly.
    proj = tmp_path / "proj"
    for payload in (b"[" * 100_000, b'{"tool_name": "Write", "tool_input": ' * 5000, b"\xef\xbb\xbf{}",
                    b'{"tool_name": "Write", "tool_input": {"file_path": "' + str(proj).encode() + b'/x\\ud800.py", "content": "a"}}',
                    b'{"tool_name": "Write", "tool_input": {"file_path": "' + str(proj).encode() + b'/s.py", "content": "a\\udc80"}}',
                    b'{"tool_name": "Edit", "tool_input": {"file_path": "/nope/\\n\\r\\u2028x.py", "old_string": "a"}}'):
        fuzz.check(payload)
    # A handful through the real console script (fd-level silence, exit code of the process).
    rng = random.Random(4)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(subprocess_samples)]
    samples += [json.dumps({"tool_name": "Write", "tool_input": {"file_path": str(proj / "w.py"),
                                                                   "content": "print('hi')\n"}}).encode(),
                json.dumps({"tool_name": "Edit", "tool_input": {"file_path": 3}}).encode(), b"[" * 100_000]
    for payload in samples:
        fuzz.check(payload, subprocess_=True)
    assert verify_in_subprocess(fuzz.data) == []


# ---------------------------------------------------------------------------------------------
# 3b. Fuzzing stdin JSON lines


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=20))
    return st.recursive(leaves, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=10), kids,
                                                                                          max_size=4), max_leaves=12)


_record_keys = ["file_path", "code", "session_id", "tool_name", "tool_use_id", "reason", "occurred_at", "event_id",
                "event_type", "pattern_id", "tool_input", "tool_response"]


records = st.one_of(_json_values(),
                    st.dictionaries(st.sampled_from(_record_keys), _json_values(), max_size=6),
                    st.fixed_dictionaries({"tool_name": st.sampled_from(["Write", "Edit", "MultiEdit", "NotebookEdit", "X"]),
                                           "tool_input": _json_values()}))


def check_parse_record(obj: Any) -> None:
    from pattern_tracker.core.capture import Change
    from pattern_tracker.sources.stdin import RecordError, parse_record

    try:
        parsed = parse_record(obj, 1.0, lambda _path: None)
    except RecordError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message and len(message) < 1000, message
        return
    if isinstance(parsed, PatternEvent):
        return
    assert isinstance(parsed, list) and all(isinstance(c, Change) for c in parsed)
    for change in parsed:
        assert isinstance(change.path, str) and isinstance(change.code, str)
        assert "\0" not in change.path  # accepted means storable: a NUL path is refused at the door


_bad_lines = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b.strip() != b""
                                              and not b.strip().startswith((b"{", b"["))),
    st.sampled_from([b"[1, 2]", b"null", b"42", b'"text"', b"{not json}", b'{"file_path": 3, "code": "x"}',
                     b'{"file_path": "/f.py", "code": "x", "extra": 1}', b'{"code": "only"}',
                     b'{"event_id": "e", "event_type": "pattern_created"}', b"\xff\xfe\xfd",
                     b'{"tool_name": "Write", "tool_input": {"file_path": "/w.py"}}', b"[" * 50_000,
                     b'{"a":' * 50_000, b'{"file_path": "/f.py", "code": "x", "\\r\\n": 1}',
                     b'{"file_path": "/f\\u0000.py", "code": "x"}']),
)


stdin_plans = st.lists(st.tuples(st.booleans(), _bad_lines), min_size=4, max_size=12)


def check_stdin_cli(plan: list[tuple[bool, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d"
        lines, bad, good = [], [], []
        for i, (is_good, junk) in enumerate(plan):
            if is_good:
                path = f"/fuzz/ok{i}.py"
                good.append(path)
                lines.append(json.dumps({"file_path": path, "code": f"v = {i}\n"}).encode())
            else:
                bad.append(i + 1)
                lines.append(junk)
        out = run_cli("run", "--source", "stdin", env=cli_env(data), input=b"\n".join(lines) + b"\n")
        errors = [line for line in out.stderr.splitlines() if line.startswith("stdin line")]
        assert [int(re.match(r"stdin line (\d+):", e).group(1)) for e in errors] == bad, out.stderr
        assert out.returncode == (3 if bad else 0), out.stderr
        assert "Traceback" not in out.stderr
        assert f"delivered {len(good)}," in out.stderr, out.stderr
        store = Store.open(data)
        try:
            assert LineageStore(store).count() == len(good)
            assert {n["file_path"] for n in LineageStore(store).query(None, limit=100)} == set(good)
        finally:
            store.close()


# ---------------------------------------------------------------------------------------------
# 3c. Fuzzing the service's answers to HttpSink


class Answer(msgspec.Struct, frozen=True):
    status: int
    content_type: str
    body: str  # "batch" | "single" | "json" | "bytes" | "huge"
    marks: tuple[int, ...] = ()  # per event index: 0 success, 1 already_exists, 2 failed, 3 omitted
    errors: tuple[str, ...] = ()
    junk_json: Any = None
    junk_bytes: bytes = b""
    transport: str = "full"  # full | truncated | closed | no_length
    extra_index: int = 0


class ScriptedService:
    """A raw HTTP/1.1 server answering each request with the next scripted Answer, and recording
    which events its *complete* answers acknowledged (by pattern_id)."""

    def __init__(self, script: list[Answer], max_body: int) -> None:
        self.script = list(script)
        self.max_body = max_body
        self.acked: set[str] = set()
        self.requests = 0

    def _body(self, a: Answer, ids: list[str], batch: bool) -> bytes:
        if a.body == "bytes":
            return a.junk_bytes
        if a.body == "json":
            return json.dumps(a.junk_json).encode()
        if a.body == "single" or (a.body == "batch" and not batch):
            ok = (a.marks[0] if a.marks else 0) in (0, 1)
            doc: dict[str, Any] = {"success": ok}
            if ok:
                doc["data"] = {"status": "already_exists"} if a.marks and a.marks[0] == 1 else {"pattern_id": ids[0]}
            else:
                doc["error"] = a.errors[0] if a.errors else "Lineage tracking failed: x"
            return json.dumps(doc).encode()
        marks = [a.marks[i % len(a.marks)] if a.marks else 0 for i in range(len(ids))]
        ok = [{"event_index": i, "data": {"status": "already_exists"} if m == 1 else {}, "pattern_id": ids[i]}
              for i, m in enumerate(marks) if m in (0, 1)]
        failed = [{"event_index": i, "error": a.errors[i % len(a.errors)] if a.errors else "Lineage tracking failed: x"}
                  for i, m in enumerate(marks) if m == 2]
        if a.extra_index:
            ok.append({"event_index": len(ids) + a.extra_index - 1, "data": {}})
            failed.append({"event_index": -a.extra_index, "error": "x"})
        doc = {"success": not failed, "batch_summary": {"total_events": len(ids), "successful_events": len(ok),
                                                        "failed_events": len(failed)},
               "successful_results": ok, "failed_results": failed or None}
        body = json.dumps(doc).encode()
        if a.body == "huge":
            doc["metadata"] = {"pad": "x" * (self.max_body + 100)}
            body = json.dumps(doc).encode()
        return body

    def _acknowledged(self, a: Answer, body: bytes, ids: list[str], batch: bool) -> set[str]:
        """The events this answer acknowledges, judged generously by the contract (the client may
        be stricter, never looser): a complete 2xx answer, a JSON object; batch: the indexes in
        successful_results and not in failed_results; single: "success": true."""
        if a.transport in ("truncated", "closed") or not 200 <= a.status < 300:
            return set()
        try:
            doc = json.loads(body)
        except ValueError:
            return set()
        if not isinstance(doc, dict):
            return set()
        if not batch:
            return {ids[0]} if doc.get("success") is True else set()
        good = {r.get("event_index") for r in doc.get("successful_results") or [] if isinstance(r, dict)}
        bad = {r.get("event_index") for r in doc.get("failed_results") or [] if isinstance(r, dict)}
        return {ids[i] for i in range(len(ids)) if i in good and i not in bad}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests += 1
            a = self.script.pop(0) if self.script else Answer(503, "application/json", "json",
                                                                 junk_json={"detail": "Database connection not available"})
            batch = request_line.split()[1].endswith("/track/batch")
            sent = json.loads(raw)
            ids = [e["pattern_id"] for e in sent["events"]] if batch else [sent["pattern_id"]]
            body = self._body(a, ids, batch)
            self.acked |= self._acknowledged(a, body, ids, batch)
            if a.transport == "closed":
                return
            lines = [f"HTTP/1.1 {a.status} X", "Connection: close"]
            if a.content_type:
                lines.append(f"Content-Type: {a.content_type}")
            if a.transport != "no_length":
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            writer.write(body[: len(body) // 2] if a.transport == "truncated" else body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def answers() -> st.SearchStrategy[Answer]:
    json_types = ["application/json", "application/json; charset=utf-8", "application/problem+json"]
    other_types = ["text/plain", "text/html", "application/octet-stream", ""]
    return st.builds(
        Answer,
        status=st.one_of(st.just(200), st.sampled_from([201, 204, 301, 400, 401, 403, 404, 405, 408, 409, 413, 422, 429,
                                                        500, 502, 503, 504]), st.integers(200, 599)),
        content_type=st.one_of(st.sampled_from(json_types), st.sampled_from(other_types)),
        body=st.sampled_from(["batch", "batch", "single", "json", "bytes", "huge"]),
        marks=st.lists(st.integers(0, 3), max_size=6).map(tuple),
        errors=st.lists(st.sampled_from(["Validation error: bad", "Validation error: Parent pattern not found: p",
                                         "Database connection not available", "Tracking operation timed out", "", "?"]),
                        max_size=3).map(tuple),
        junk_json=_json_values(),
        junk_bytes=st.binary(max_size=80),
        transport=st.sampled_from(["full", "full", "full", "truncated", "closed", "no_length"]),
        extra_index=st.integers(0, 2),
    )


def _events(n: int) -> list[PatternEvent]:
    out: list[PatternEvent] = []
    for i in range(n):
        parent = out[-1] if i % 3 and out else None  # some parents and children in one batch
        out.append(build_event(file_path=f"/fz/f{i // 3}.py", code=f"x = {i}\n",
                               version=int(parent.pattern_version) + 1 if parent else 1,
                               parent_pattern_id=parent.pattern_id if parent else None, source="stdin",
                               occurred_at=1.0))
    return out


async def _deliver_against(script: list[Answer], n: int, use_batch: bool) -> tuple[list[PatternEvent], list[Any], ScriptedService]:
    from pattern_tracker.sinks.http import HttpSink

    service = ScriptedService(script, max_body=4096)
    server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events = _events(n)
    try:
        async with HttpSink(f"http://127.0.0.1:{port}", connect_timeout=1, read_timeout=1, total_timeout=2,
                            use_batch_endpoint=use_batch, max_response_bytes=4096) as sink:
            outcomes = await asyncio.wait_for(sink.deliver(events), 30)
    finally:
        server.close()
        await server.wait_closed()
    return events, outcomes, service


def check_http_answers(script: list[Answer], n: int, use_batch: bool) -> None:
    """HttpSink.deliver never raises, gives one Outcome per event, acknowledges only what the
    service acknowledged, and its own safety net (error_class internal) never fires."""
    from pattern_tracker.model.outcome import Outcome

    events, outcomes, service = asyncio.run(_deliver_against(script, n, use_batch))
    assert len(outcomes) == len(events) and all(isinstance(o, Outcome) for o in outcomes)
    for ev, out in zip(events, outcomes):
        assert out.error_class != "internal", out  # the sink's own safety net caught a bug
        if out.acknowledged:
            assert ev.pattern_id in service.acked, (ev.pattern_id, out, script)


# ---------------------------------------------------------------------------------------------
# 4. Disk pressure


def record_lines(n: int, size: int, prefix: str = "/dp/f") -> bytes:
    """``n`` JSON lines for `run --source stdin`, each a file of about ``size`` bytes."""
    return b"".join(json.dumps({"file_path": f"{prefix}{i}.py", "code": (f"# {i}\n" + "x = 1\n" * (size // 6))}).encode()
                    + b"\n" for i in range(n))


def map_env(data: Path, map_mb: int, max_mb: int, **extra: str) -> dict[str, str]:
    # An unreachable service: everything stays in the spool, which is what we look at.
    return cli_env(data, PATTERN_TRACKER__STORAGE__MAP_SIZE_MB=str(map_mb),
                   PATTERN_TRACKER__STORAGE__MAX_MAP_SIZE_MB=str(max_mb), PATTERN_TRACKING_API_URL="http://127.0.0.1:9",
                   PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false", CIRCUIT_BREAKER_FAILURE_THRESHOLD="1",
                   CIRCUIT_BREAKER_RECOVERY_TIMEOUT="600", **extra)


def readable_spool(data: Path) -> list[str]:
    """Every spooled entry decodes (in a fresh process); returns their event ids."""
    out = subprocess.run([sys.executable, "-c", "import json, sys; from pattern_tracker.core.store import Store; "
                          "from pattern_tracker.state.spool import Spool; s = Store.open(sys.argv[1]); "
                          "print(json.dumps([e.event.event_id for _, e in Spool(s).read_batch(0, 10**6)]))", str(data)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
