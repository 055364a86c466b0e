"""`pattern-tracker query` as a user runs it: real console-script subprocesses over a real data
directory, against the embedded store, a real `pattern-tracker serve`, and a service without the
query-by-file extension (like the real Phase 4 service)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

from pattern_tracker.model.api import PREFIX
from tests.clitools import cli_env, run_cli, serve

EDITED_AT = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z: far from any time the store could receive it
EDITED_ISO = "2023-11-14T22:13:20.250+00:00"


def _ok(out: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert out.returncode == 0, f"exit {out.returncode}\nstdout: {out.stdout}\nstderr: {out.stderr}"
    assert "Traceback" not in out.stderr
    return out


def _changes(*records: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _notebook_edit(notebook: Path, cell: str, source: str) -> dict:
    return {"session_id": "s1", "hook_event_name": "PostToolUse", "tool_name": "NotebookEdit",
            "tool_use_id": f"toolu_{cell}_{len(source)}",
            "tool_input": {"notebook_path": str(notebook), "cell_id": cell, "new_source": source},
            "tool_response": {}}


def _post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _version_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.lstrip().startswith("v")]


def test_query_shows_when_the_edit_happened_not_when_it_was_received(tmp_path: Path) -> None:
    edits = _changes({"file_path": "/proj/a.py", "code": "a = 1\n", "occurred_at": EDITED_AT},
                     {"file_path": "/proj/a.py", "code": "a = 2\n", "occurred_at": EDITED_AT + 60})

    # The embedded store (no api.url): stored now, edited in 2023.
    local = cli_env(tmp_path / "local")
    _ok(run_cli("run", "--source", "stdin", env=local, input=edits))
    out = _ok(run_cli("query", "--file", "/proj/a.py", env=local))
    lines = _version_lines(out.stdout)
    assert len(lines) == 2 and EDITED_ISO in lines[0] and "2023-11-14T22:14:20.250+00:00" in lines[1], out.stdout
    assert "(received)" not in out.stdout
    pattern_id = json.loads(_ok(run_cli("query", "--file", "/proj/a.py", "--json", env=local)).stdout)[-1]["pattern_id"]
    ancestry = _ok(run_cli("query", pattern_id, env=local)).stdout
    assert EDITED_ISO in ancestry and "2023-11-14T22:14:20.250+00:00" in ancestry, ancestry

    # Through a real serve: the time travels in the event's pattern_data and comes back from the service.
    with serve(tmp_path / "service") as url:
        remote = cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=url)
        _ok(run_cli("run", "--source", "stdin", env=remote, input=edits))
        # A version stored without an edit time (an older client, or an older store) says so.
        _post_json(f"{url}{PREFIX}/lineage/track", {"event_type": "pattern_created", "pattern_id": "old-1",
                                                    "file_path": "/proj/old.py", "pattern_data": {"code": "o"}})
        out = _ok(run_cli("query", "--file", "/proj/a.py", env=remote))
        assert EDITED_ISO in out.stdout and "(received)" not in out.stdout, out.stdout
        old = _ok(run_cli("query", "--file", "/proj/old.py", env=remote))
        [line] = _version_lines(old.stdout)
        received = datetime.fromisoformat(line.split()[4])
        assert line.endswith("parent -") and "(received)" in line, old.stdout
        assert abs(received.timestamp() - datetime.now(timezone.utc).timestamp()) < 300


def _edit_two_cells(notebook: Path, env: dict[str, str]) -> None:
    _ok(run_cli("run", "--source", "stdin", env=env, input=_changes(
        _notebook_edit(notebook, "c1", "x = 1"), _notebook_edit(notebook, "c2", "y = 2"),
        _notebook_edit(notebook, "c1", "x = 10"))))


def _assert_cells_listed(stdout: str, notebook: Path) -> None:
    assert f"{notebook}: 2 cell(s), 3 version(s)" in stdout, stdout
    assert "cell c1: 2 version(s)" in stdout and "cell c2: 1 version(s)" in stdout, stdout
    assert f"query --file '{notebook}#c1'" in stdout


def test_query_file_of_a_notebook_lists_its_cells(tmp_path: Path) -> None:
    notebook = tmp_path / "nb.ipynb"
    local = cli_env(tmp_path / "local")
    _edit_two_cells(notebook, local)
    _assert_cells_listed(_ok(run_cli("query", "--file", str(notebook), env=local)).stdout, notebook)
    nodes = json.loads(_ok(run_cli("query", "--file", str(notebook), "--json", env=local)).stdout)
    assert sorted(n["file_path"] for n in nodes) == [f"{notebook}#c1", f"{notebook}#c1", f"{notebook}#c2"]
    one = _ok(run_cli("query", "--file", f"{notebook}#c2", env=local)).stdout
    assert one.startswith(f"{notebook}#c2: 1 version(s)"), one

    with serve(tmp_path / "service") as url:
        remote = cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=url)
        _edit_two_cells(notebook, remote)
        _assert_cells_listed(_ok(run_cli("query", "--file", str(notebook), env=remote)).stdout, notebook)


async def test_query_file_of_a_notebook_against_a_service_without_query_by_file(tmp_path: Path, serve_factory) -> None:
    """The real service has no GET lineage/query: the cells come from our own heads, their lineage from it."""
    async def no_query_by_file(request: web.Request) -> web.Response | None:
        if request.path == PREFIX + "/lineage/query":
            return web.json_response({"detail": "Not Found"}, status=404)
        return None

    url = await serve_factory(fault_hook=no_query_by_file)
    notebook = tmp_path / "nb.ipynb"
    env = cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=url)
    await asyncio.to_thread(_edit_two_cells, notebook, env)
    out = _ok(await asyncio.to_thread(run_cli, "query", "--file", str(notebook), env=env)).stdout
    assert f"{notebook}: 2 cell(s)" in out and f"query --file '{notebook}#c1'" in out, out
    assert "cell c1:" in out and "cell c2:" in out and "ancestry depth 1" in out and "ancestry depth 0" in out, out
