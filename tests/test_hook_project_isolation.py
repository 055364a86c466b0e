"""The hook inside a real project: none of the project's code runs, and the edit still arrives.

Claude Code starts the hook in the user's project directory, with the user's environment. A data
or ML project often has its own ``pipeline/`` package (our folders' names) and exports
``PYTHONPATH=.``; neither may make the hook or the drainer it starts import the project's code.
Everything here is real: the console script, the drainer it spawns, ``serve`` on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from pattern_tracker.usecases.claude_settings import is_our_command
from tests.clitools import BIN, cli_env, serve, wait_for
from tests.hooktools import payloads

SHADOWS = ("pipeline", "operators", "sinks", "pattern_tracker")


def make_project(root: Path, markers: Path) -> Path:
    """A realistic project whose every shadowing module leaves a marker file if it is ever run."""
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "0.1.0"\n')
    (root / "src" / "shop").mkdir(parents=True)
    (root / "src" / "shop" / "__init__.py").write_text("")
    (root / "src" / "shop" / "cart.py").write_text("class Cart:\n    pass\n")

    def trap(name: str) -> str:
        return f"import pathlib\npathlib.Path({str(markers)!r}, {name!r}).write_text('ran')\n"

    for pkg in SHADOWS:
        (root / pkg).mkdir()
        for module in ("__init__", "cli", "__main__"):
            (root / pkg / f"{module}.py").write_text(trap(f"{pkg}.{module}"))
    (root / "sitecustomize.py").write_text(trap("sitecustomize"))  # any interpreter reading PYTHONPATH runs it
    return root


def delivered(url: str, file_path: str) -> list[dict]:
    query = urllib.parse.urlencode({"file_path": file_path, "limit": 10})
    with urllib.request.urlopen(f"{url}/api/pattern-traceability/lineage/query?{query}", timeout=5) as r:
        return json.loads(r.read())["data"]["patterns"]


@pytest.mark.parametrize("how", ["console script, cwd = project", "python -I, PYTHONPATH = project"])
def test_the_hook_in_a_project_with_its_own_packages_runs_none_of_them(tmp_path: Path, how: str) -> None:
    import subprocess

    markers = tmp_path / "markers"
    markers.mkdir()
    project = make_project(tmp_path / "shop", markers)
    data = tmp_path / "data"
    target = project / "src" / "shop" / "cart.py"
    doc = json.loads(json.dumps(next(p for p in payloads() if p["tool_name"] == "Write")))
    doc["cwd"] = str(project)
    doc["tool_input"]["file_path"] = doc["tool_response"]["filePath"] = str(target)
    with serve(tmp_path / "service") as url:
        env = cli_env(data, PATTERN_TRACKING_API_URL=url)
        if how.startswith("python -I"):
            # The form to install when the shell exports PYTHONPATH (docs/cli.md#install-hook-and-its-scopes):
            # the console script itself would otherwise import a `pattern_tracker` found there.
            command = [sys.executable, "-I", str(BIN), "hook"]
            env["PYTHONPATH"] = str(project)
            assert is_our_command(" ".join(command))
        else:
            command = [str(BIN), "hook"]
            env.pop("PYTHONPATH", None)
        out = subprocess.run(command, cwd=project, env=env, input=json.dumps(doc).encode(), capture_output=True,
                             timeout=60)
        assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"")
        # The drainer the hook started (not a `drain` of ours) delivers the edit.
        [node] = wait_for(lambda: delivered(url, str(target)), timeout=30, interval=0.1)
        assert node["file_path"] == str(target) and "class Cart" in doc["tool_input"]["content"]
        log = data / "drain.log"
        wait_for(lambda: log.exists() and "left in spool 0" in log.read_text(), timeout=30)
    assert sorted(os.listdir(markers)) == []
    assert "Traceback" not in log.read_text() and not (data / "hook.log").exists()
