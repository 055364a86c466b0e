"""Archives: deterministic generation, info, replay through the full pipeline, record."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from pattern_tracker.model.archive import Archive
from pattern_tracker.usecases.archive_gen import MAX_SIZE, MIN_SIZE, generate
from tests.clitools import cli_env, free_port, run_cli, serve


def digest(events) -> str:
    import msgspec

    h = hashlib.sha256()
    for ev in events:
        h.update(msgspec.msgpack.encode(ev))
    return h.hexdigest()


def test_generation_is_deterministic_realistic_and_chained() -> None:
    a = list(generate(600, 20, seed=5))
    assert digest(a) == digest(generate(600, 20, seed=5)) != digest(generate(600, 20, seed=6))
    assert {ev.language for ev in a} >= {"python", "typescript", "go", "rust", "java", "sql", "yaml"}
    sizes = [len(ev.code.encode()) for ev in a]
    assert MIN_SIZE <= min(sizes) and max(sizes) <= MAX_SIZE + 2000 and max(sizes) > 10 * min(sizes)
    by_file: dict[str, list] = {}
    for ev in a:
        by_file.setdefault(ev.file_path, []).append(ev)
    assert len(by_file) == 20
    for chain in by_file.values():
        assert [int(e.pattern_version) for e in chain] == list(range(1, len(chain) + 1))
        assert chain[0].event_type == "pattern_created" and not chain[0].parent_pattern_ids
        assert all(b.parent_pattern_ids == [a_.pattern_id] for a_, b in zip(chain, chain[1:]))
    assert all(x.occurred_at < y.occurred_at for x, y in zip(a, a[1:]))


def test_generate_info_and_replay_to_serve(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    out = run_cli("archive", "generate", "--events", "800", "--files", "30", "--seed", "2", str(tmp_path / "arch"), env=env)
    assert out.returncode == 0 and "wrote 800 events" in out.stdout, out.stderr
    again = run_cli("archive", "generate", "--events", "5", str(tmp_path / "arch"), env=env)
    assert again.returncode == 2 and "already holds an archive" in again.stderr
    info = json.loads(run_cli("archive", "info", str(tmp_path / "arch"), "--json", env=env).stdout)
    assert info["events"] == 800 and info["files"] == 30 and info["meta"]["seed"] == 2
    assert run_cli("archive", "info", str(tmp_path / "nope"), env=env).returncode == 2
    with serve(tmp_path / "service") as url:
        env = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL=url)
        res = run_cli("replay", str(tmp_path / "arch"), "--json", env=env)
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert summary["delivered"] == 800 and summary["left_in_spool"] == 0
        with urllib.request.urlopen(f"{url}/api/pattern-traceability/lineage/query?limit=1000", timeout=5) as r:
            assert json.loads(r.read())["data"]["total"] == 800
        # Replaying again is harmless: every event already exists.
        second = json.loads(run_cli("replay", str(tmp_path / "arch"), "--json", env=env).stdout)
        assert second["already_existed"] == 800 and second["delivered"] == 0


def test_replay_with_the_service_down_exits_4_and_keeps_the_events_in_the_spool(tmp_path: Path) -> None:
    from pattern_tracker.state.spool import Spool
    from pattern_tracker.core.store import Store

    env = cli_env(tmp_path / "data")
    assert run_cli("archive", "generate", "--events", "40", "--files", "4", str(tmp_path / "arch"), env=env).returncode == 0
    down = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{free_port()}",
                   PATTERN_TRACKER__PATTERN_TRACKING__SHUTDOWN_TIMEOUT="3",
                   EXPONENTIAL_BACKOFF_BASE_DELAY="0.01", EXPONENTIAL_BACKOFF_MAX_DELAY="0.05")
    res = run_cli("replay", str(tmp_path / "arch"), "--json", env=down)
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    summary = json.loads(res.stdout)
    assert summary["read"] == 40 and summary["delivered"] == 0 and summary["left_in_spool"] == 40
    text = run_cli("replay", str(tmp_path / "arch"), env=down)  # the human form says so too
    assert text.returncode == 4 and "stay in the spool" in text.stdout, text.stdout
    archive = Archive(str(tmp_path / "arch"))
    try:
        expected = {ev.event_id for chunk in archive.chunks(100) for ev in chunk}
    finally:
        archive.close()
    store = Store.open(tmp_path / "data")
    try:
        spooled = {entry.event.event_id for _, entry in Spool(store).read_batch(0, 1000)}
    finally:
        store.close()
    assert spooled == expected
    # The service back: the next drain delivers them, and a replay that delivers everything exits 0.
    with serve(tmp_path / "service") as url:
        up = cli_env(tmp_path / "data", PATTERN_TRACKING_API_URL=url)
        assert run_cli("circuit", "reset", env=up).returncode == 0  # the outage opened it
        drained = run_cli("drain", "--json", env=up)
        assert drained.returncode == 0 and json.loads(drained.stdout)["delivered"] == 40, drained.stdout
        again = run_cli("replay", str(tmp_path / "arch"), "--json", env=up)
        assert again.returncode == 0 and json.loads(again.stdout)["left_in_spool"] == 0, again.stdout


def test_replay_whose_spill_the_full_store_cannot_take_fails_loudly_and_counts_what_it_lost(tmp_path: Path) -> None:
    """The service down, every archive event spilled, the store's map full (storage.max_map_size_mb
    2): the spill writes fail. Never silent (it was "store write failed" in the log, exit 0): exit 1,
    one line saying how many were not kept and what to do, reading stopped, and the counters
    reconcile: read = in the spool + delivered + dead-lettered + not kept. The same replay with room
    keeps every event in the spool (exit 4)."""
    from pattern_tracker.state.spool import Spool
    from pattern_tracker.core.store import Store

    total = 2000
    arch = str(tmp_path / "arch")
    assert run_cli("archive", "generate", "--events", str(total), "--files", "6", arch,
                   env=cli_env(tmp_path / "gen")).returncode == 0

    def replay(data: Path, map_mb: int) -> subprocess.CompletedProcess[str]:
        env = cli_env(data, PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{free_port()}",
                      PATTERN_TRACKING_CACHE_SIZE="100000", PATTERN_TRACKER__PATTERN_TRACKING__SHUTDOWN_TIMEOUT="3",
                      PATTERN_TRACKER__STORAGE__MAP_SIZE_MB=str(map_mb), PATTERN_TRACKER__STORAGE__MAX_MAP_SIZE_MB=str(map_mb),
                      EXPONENTIAL_BACKOFF_BASE_DELAY="0.01", EXPONENTIAL_BACKOFF_MAX_DELAY="0.05")
        return run_cli("replay", arch, "--json", env=env)

    full = replay(tmp_path / "full", 2)
    assert full.returncode == 1, (full.returncode, full.stdout, full.stderr)  # docs/cli.md#exit-codes: 1
    for bad in ("Traceback", "internal error"):
        assert bad not in full.stderr, full.stderr
    said = [line for line in full.stderr.splitlines() if line.startswith("pattern-tracker:")]
    assert len(said) == 1 and "event(s) were neither delivered nor kept" in said[0] and "is full" in said[0] \
        and "still in the archive" in said[0] and "storage.max_map_size_mb" in said[0], full.stderr
    summary = json.loads(full.stdout)
    store = Store.open(tmp_path / "full")
    try:
        in_spool = Spool(store).size()
    finally:
        store.close()
    assert summary["not_kept"] > 0 and f"replay: {summary['not_kept']} event(s)" in said[0], summary
    assert summary["read"] < total, summary  # reading stopped at the first loss
    assert summary["left_in_spool"] == in_spool
    assert summary["read"] == in_spool + summary["delivered"] + summary["dead_lettered"] + summary["not_kept"], summary

    room = replay(tmp_path / "room", 64)
    assert room.returncode == 4, (room.returncode, room.stdout, room.stderr)
    summary = json.loads(room.stdout)
    assert (summary["read"], summary["left_in_spool"], summary["not_kept"]) == (total, total, 0), summary


def test_replay_under_block_with_a_full_spool_and_the_service_down_stops_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    """overflow_policy block, cache_size 10, the service down: replay ends with exit 4 and one line
    (it read what the spool holds; the rest of the archive is unread), not "internal error:
    SpoolFull" (a full spool at start) nor events spilled into a full spool and lost ("store write
    failed", exit 0). The service back: circuit reset, drain, replay again: every event once."""
    from pattern_tracker.sinks.lineage_store import LineageStore
    from pattern_tracker.state.spool import Spool
    from pattern_tracker.core.store import Store

    bound, total = 10, 60
    data, arch = tmp_path / "data", str(tmp_path / "arch")
    assert run_cli("archive", "generate", "--events", str(total), "--files", "6", arch, env=cli_env(data)).returncode == 0
    archive = Archive(arch)
    try:
        events = [ev for chunk in archive.chunks(100) for ev in chunk]
    finally:
        archive.close()
    block = {"PATTERN_TRACKING_CACHE_SIZE": str(bound), "PATTERN_TRACKER__PATTERN_TRACKING__OVERFLOW_POLICY": "block"}
    down = cli_env(data, PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{free_port()}",
                   PATTERN_TRACKER__PATTERN_TRACKING__SHUTDOWN_TIMEOUT="3",
                   EXPONENTIAL_BACKOFF_BASE_DELAY="0.01", EXPONENTIAL_BACKOFF_MAX_DELAY="0.05", **block)

    def stopped(res: subprocess.CompletedProcess[str], read: int) -> None:
        assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)  # docs/cli.md#exit-codes: 4
        for bad in ("Traceback", "internal error", "store write failed", "SpoolFull"):
            assert bad not in res.stderr, res.stderr
        said = [line for line in res.stderr.splitlines() if line.startswith("pattern-tracker:")]
        assert len(said) == 1 and f"replay stopped after {read} of {total} events ({total - read} left unread): the spool is full" \
            in said[0] and (f"--skip {read}`" if read else "--json`") in said[0], res.stderr
        summary = json.loads(res.stdout)
        assert summary["read"] == read and summary["delivered"] == 0 and summary["left_in_spool"] == bound, summary

    stopped(run_cli("replay", arch, "--json", env=down), bound)  # an empty spool at start: fills it, then stops
    stopped(run_cli("replay", arch, "--json", env=down), 0)  # the spool full at start (backlog): reads nothing
    store = Store.open(data)
    try:  # what was read is in the spool: the archive's first events; the rest is unread
        assert [e.event.event_id for _, e in Spool(store).read_batch(0, 1000)] == [ev.event_id for ev in events[:bound]]
    finally:
        store.close()
    with serve(tmp_path / "service") as url:
        up = cli_env(data, PATTERN_TRACKING_API_URL=url, **block)
        assert run_cli("circuit", "reset", env=up).returncode == 0  # the outage opened it
        drained = run_cli("drain", "--json", env=up)
        assert drained.returncode == 0 and json.loads(drained.stdout)["delivered"] == bound, drained.stdout
        again = run_cli("replay", arch, "--json", env=up)
        assert again.returncode == 0, (again.stdout, again.stderr)
        summary = json.loads(again.stdout)
        assert (summary["read"], summary["delivered"], summary["already_existed"], summary["left_in_spool"]) == \
            (total, total - bound, bound, 0), summary
    store = Store.open(tmp_path / "service")
    try:
        nodes = LineageStore(store).query(None, limit=1000)
    finally:
        store.close()
    assert sorted((n["pattern_id"], n["pattern_version"]) for n in nodes) == \
        sorted((ev.pattern_id, ev.pattern_version) for ev in events)  # every archive event, each once


def test_replay_rate_paces_the_source(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    run_cli("archive", "generate", "--events", "300", "--files", "5", str(tmp_path / "arch"), env=env)
    started = time.monotonic()
    res = run_cli("replay", str(tmp_path / "arch"), "--rate", "200", "--sink", "null", "--json", env=env)
    elapsed = time.monotonic() - started
    assert res.returncode == 0 and json.loads(res.stdout)["delivered"] == 300
    assert elapsed >= 1.4  # 300 events at 200/s: at least 1.5 s of pacing (minus the first burst)
    bad = run_cli("replay", str(tmp_path / "arch"), "--rate", "0", env=env)
    assert bad.returncode == 2 and "--rate" in bad.stderr


def test_record_then_replay_round_trip(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    lines = b"".join(json.dumps({"file_path": f"/r/{i % 3}.py", "code": f"x = {i}"}).encode() + b"\n" for i in range(12))
    out = run_cli("archive", "record", str(tmp_path / "rec"), "--source", "stdin", env=env, input=lines)
    assert out.returncode == 0, out.stderr
    archive = Archive(str(tmp_path / "rec"))
    try:
        events = [ev for chunk in archive.chunks(100) for ev in chunk]
    finally:
        archive.close()
    assert len(events) == 12 and [e.pattern_version for e in events if e.file_path == "/r/0.py"] == ["1", "2", "3", "4"]


def _mapped_rss_kib(path: Path) -> int:
    """Resident KiB of this process's maps of ``path`` (from /proc/self/smaps)."""
    target, total, inside = str(path.resolve()), 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip("\n").endswith(target)
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


def test_chunks_read_everything_once_in_order_and_give_back_the_map(tmp_path: Path, monkeypatch) -> None:
    import pattern_tracker.model.archive as archive_mod

    events = list(generate(700, 25, seed=9))
    archive = Archive(str(tmp_path / "arch"), create=True)
    try:
        archive.append(events)
        for size in (1, 64, 699, 700, 5000):
            got = [ev for chunk in archive.chunks(size) for ev in chunk]
            assert digest(got) == digest(events), size
        assert [ev.event_id for c in archive.chunks(64, after=690) for ev in c] == [ev.event_id for ev in events[690:]]
        assert list(archive.chunks(10, after=700)) == []

        data = tmp_path / "arch" / "data.mdb"
        for _ in archive.chunks(5000):
            pass
        touched = _mapped_rss_kib(data)
        assert touched > 1024  # the whole archive was touched through the map
        monkeypatch.setattr(archive_mod, "RELEASE_EVERY", 1)  # give the pages back after every chunk
        got = [ev for chunk in archive.chunks(100) for ev in chunk]
        assert digest(got) == digest(events)  # nothing changed by dropping the pages
        assert _mapped_rss_kib(data) < touched / 3  # only the last chunk's pages (100 of 700 events) stay
    finally:
        archive.close()
