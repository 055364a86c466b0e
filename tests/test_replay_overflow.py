"""The spool is shared: a replay never makes it drop an event, and every run says what was dropped.

One LMDB spool per data directory holds hooks' edits (whose only record it may be) beside what
`run`, `watch` or a replay could not deliver. An archive keeps its events, so a replay that finds
the spool full stops reading (as under ``block``) instead of letting ``drop_oldest`` evict what
the hooks left there. Live sources keep the configured policy, and their summary counts the drops.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path


from pattern_tracker.core.store import Store
from pattern_tracker.model.archive import Archive
from pattern_tracker.sinks.lineage_store import LineageStore
from pattern_tracker.state.spool import Spool
from tests.clitools import cli_env, free_port, run_cli, serve
from tests.spool_scenarios import BOUND, FAST, TOTAL, RefusingService, hook_edits

def archive_events(path: str) -> list:
    archive = Archive(path)
    try:
        return [ev for chunk in archive.chunks(100) for ev in chunk]
    finally:
        archive.close()


def spool_view(data: Path) -> tuple[list[str], int]:
    """(the spooled event ids, oldest first; events the overflow policy ever dropped)."""
    store = Store.open(data)
    try:
        spool = Spool(store)
        return [e.event.event_id for _, e in spool.read_batch(0, 10_000)], spool.stats(time.time()).dropped
    finally:
        store.close()


def stored_nodes(service_data: Path) -> list[tuple[str, str]]:
    store = Store.open(service_data)
    try:
        return sorted((n["pattern_id"], n["pattern_version"]) for n in LineageStore(store).query(None, limit=10_000))
    finally:
        store.close()


def pattern_tracker_line(stderr: str) -> str:
    said = [line for line in stderr.splitlines() if line.startswith("pattern-tracker:")]
    assert len(said) == 1, stderr
    for bad in ("Traceback", "internal error", "dropped (overflow_policy"):
        assert bad not in stderr, stderr
    return said[0]


def test_replay_into_a_full_spool_evicts_no_hook_edit_and_resumes_with_the_command_it_names(tmp_path: Path) -> None:
    """cache_size 50, drop_oldest (the defaults but the size), 5 hook edits in the spool, the service
    down: the replay takes the 45 events the spool has room for, then stops (exit 4) naming what is
    unread and the command that goes on. Every hook edit is still spooled, nothing was dropped (before:
    the archive's spills evicted the oldest entries, the hook edits first, one WARNING each). The
    service back: the command named delivers the rest, the spool first; each event once."""
    data, arch = tmp_path / "data", str(tmp_path / "arch")
    assert run_cli("archive", "generate", "--events", str(TOTAL), "--files", "10", arch,
                   env=cli_env(tmp_path / "gen")).returncode == 0
    events = archive_events(arch)
    hooks = 5
    hook_edits(cli_env(data, **FAST), tmp_path / "proj", hooks)
    hook_ids, dropped = spool_view(data)
    assert len(hook_ids) == hooks and dropped == 0

    down = cli_env(data, PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{free_port()}", **FAST)
    res = run_cli("replay", arch, "--json", env=down)
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    summary = json.loads(res.stdout)
    read = BOUND - hooks
    assert (summary["read"], summary["unread"], summary["delivered"], summary["left_in_spool"], summary["dropped"],
            summary["not_kept"]) == (read, TOTAL - read, 0, BOUND, 0, 0), summary
    line = pattern_tracker_line(res.stderr)
    assert f"replay stopped after {read} of {TOTAL} events ({TOTAL - read} left unread): the spool is full " \
           f"({BOUND} of cache_size {BOUND})" in line and "never makes the spool drop an event" in line, line
    ids, dropped = spool_view(data)
    assert ids == hook_ids + [ev.event_id for ev in events[:read]] and dropped == 0  # the hook edits first, all there

    # The same again in human form: the spool full at start, nothing read, nothing dropped, no "dropped" said.
    again = run_cli("replay", arch, env=down)
    assert again.returncode == 4 and "replay: read 0 of 200" in again.stdout and "dropped" not in again.stdout, again
    assert "replay stopped after 0 of 200 events (200 left unread)" in pattern_tracker_line(again.stderr)
    assert spool_view(data) == (ids, 0)

    resume = re.search(r"`(pattern-tracker replay [^`]+)`", line)  # the same command line, and where to go on
    assert resume is not None and resume.group(1) == f"pattern-tracker replay {shlex.quote(arch)} --json --skip {read}"
    with serve(tmp_path / "service") as url:
        # The circuit the outage opened lets trial calls through at once (recovery_timeout 0.1 s).
        up = cli_env(data, PATTERN_TRACKING_API_URL=url, CIRCUIT_BREAKER_RECOVERY_TIMEOUT="0.1", **FAST)
        res = run_cli(*shlex.split(resume.group(1))[1:], env=up)
        assert res.returncode == 0, (res.stdout, res.stderr)
        summary = json.loads(res.stdout)
        assert (summary["skipped"], summary["read"], summary["unread"], summary["delivered"],
                summary["already_existed"], summary["left_in_spool"], summary["dropped"]) == \
            (read, TOTAL - read, 0, TOTAL + hooks, 0, 0, 0), summary  # nothing sent twice: none already there
    nodes = stored_nodes(tmp_path / "service")
    assert len(nodes) == len(set(nodes)) == TOTAL + hooks
    assert {(ev.pattern_id, ev.pattern_version) for ev in events} <= set(nodes)
    assert spool_view(data) == ([], 0)


def test_replay_whose_room_another_process_took_keeps_no_event_at_a_hook_edits_cost(tmp_path: Path) -> None:
    """The spool empty at start: the replay sends 50 events (the room there is). While they are in
    flight, hooks fill the spool; the service refuses them. Their spill finds no free room: they are
    not kept (the archive has them), never spooled in the hooks' place; the replay stops (exit 4),
    says so and names the re-run from the start. Re-run with the service up: everything delivered."""
    data, arch = tmp_path / "data", str(tmp_path / "arch")
    assert run_cli("archive", "generate", "--events", str(TOTAL), "--files", "10", arch,
                   env=cli_env(tmp_path / "gen")).returncode == 0
    with RefusingService(data, BOUND) as service:
        res = run_cli("replay", arch, "--json", env=cli_env(data, PATTERN_TRACKING_API_URL=service.url, **FAST))
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    summary = json.loads(res.stdout)
    assert (summary["read"], summary["delivered"], summary["not_kept"], summary["left_in_spool"], summary["dropped"]) \
        == (BOUND, 0, BOUND, BOUND, 0), summary
    line = pattern_tracker_line(res.stderr)
    assert f"{BOUND} of the events read found no room in the spool" in line and "are not kept (the archive has them)" \
        in line and f"`pattern-tracker replay {shlex.quote(arch)} --json`" in line, line
    assert len(service.filled) == BOUND and spool_view(data) == (service.filled, 0)  # the live edits, all there

    with serve(tmp_path / "service") as url:
        up = cli_env(data, PATTERN_TRACKING_API_URL=url, CIRCUIT_BREAKER_RECOVERY_TIMEOUT="0.1", **FAST)
        res = run_cli("replay", arch, "--json", env=up)
        assert res.returncode == 0, (res.stdout, res.stderr)
        summary = json.loads(res.stdout)
        assert (summary["read"], summary["delivered"], summary["left_in_spool"]) == (TOTAL, TOTAL + BOUND, 0), summary
    assert len(stored_nodes(tmp_path / "service")) == TOTAL + BOUND


def stdin_records(n: int) -> bytes:
    return b"".join(json.dumps({"file_path": f"/w/live_{i}.py", "code": f"x = {i}\n"}).encode() + b"\n"
                    for i in range(n))


def test_a_live_source_still_drops_as_configured_and_its_summary_says_how_many(tmp_path: Path) -> None:
    """`run --source stdin`, cache_size 5, drop_oldest, the service down: stdin's edits live only
    in the spool, so the configured policy applies — and the run says so: `dropped N` on its
    summary line and in --json, N what the spool's own counter counted: each of the 35 surplus
    events once."""
    data = tmp_path / "data"
    env = cli_env(data, PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{free_port()}", **{
        **FAST, "PATTERN_TRACKING_CACHE_SIZE": "5"})
    res = run_cli("run", "--source", "stdin", "--json", env=env, input=stdin_records(40))
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    summary = json.loads(res.stdout)
    ids, dropped = spool_view(data)
    assert summary["read"] == 40 and summary["left_in_spool"] == len(ids) == 5, summary
    assert summary["dropped"] == dropped == 40 - 5, (summary, dropped)
    done = [line for line in res.stderr.splitlines() if line.startswith("done:")]
    assert len(done) == 1 and f"dropped {dropped} (the spool was full: overflow_policy drop_oldest)" in done[0], res.stderr
