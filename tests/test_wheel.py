"""The distribution as a user gets it: a built wheel installed into a fresh venv, used outside the source tree.

The editable install the rest of the suite runs on maps ``pattern_tracker`` onto the card's folders;
this test proves the mapping also holds in a real wheel: one import package (no generic
``pipeline``/``operators``/``sinks`` in site-packages), the defaults shipped as package data, and
the console script working from a directory that has nothing of ours in it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clitools import cli_env, serve, wait_for

REPO = Path(__file__).resolve().parent.parent


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Iterator[dict[str, Path]]:
    """Build the wheel from the source tree and install it (alone, no deps) into a fresh venv.

    The dependencies come from the test venv's site-packages through a path file: the registry is
    not needed, and the editable install of the test venv is not visible (its own path file lives in
    the test venv and path files are only read in site directories).
    """
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(dist), str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("pattern_tracker-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = _site_packages(venv)
    before = set(p.name for p in site.iterdir())
    (site / "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                           "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr[-3000:]
    added = set(p.name for p in site.iterdir()) - before - {"_test_deps.pth"}
    outside = root / "elsewhere"
    outside.mkdir()
    yield {"wheel": wheel, "venv": venv, "site": site, "cwd": outside, "added": added}  # type: ignore[dict-item]


def test_wheel_holds_one_import_package_and_its_data(installed) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"pattern_tracker"}
    for data in ("pattern_tracker/defaults/default.yaml", "pattern_tracker/defaults/chaos/mixed.yaml",
                 "pattern_tracker/operators/retry.py", "pattern_tracker/sinks/http.py",
                 "pattern_tracker/sources/watch.py", "pattern_tracker/web/static/explorer/index.html",
                 "pattern_tracker/web/static/vendor/highlightjs/LICENSE", "pattern_tracker/web/static/vendor/jsdiff/LICENSE"):
        assert data in names, data
    assert not any(n.startswith(("tests/", "benchmarks/", "pipeline/", "operators/", "sinks/")) for n in names)
    # Installed: the package, its dist-info and nothing else in site-packages; the script in bin/.
    assert {a for a in installed["added"] if not a.endswith(".dist-info")} == {"pattern_tracker"}
    assert (installed["venv"] / "bin" / "pattern-tracker").exists()


def _run(installed, *args: str, env: dict[str, str], input: bytes | None = None, timeout: float = 60):
    return subprocess.run([str(installed["venv"] / "bin" / "pattern-tracker"), *args], cwd=installed["cwd"], env=env,
                          input=input, capture_output=True, timeout=timeout)


def test_import_and_help_from_outside_the_tree(installed, tmp_path) -> None:
    env = cli_env(tmp_path / "data")
    py = installed["venv"] / "bin" / "python"
    out = subprocess.run([str(py), "-c", "import pattern_tracker, pattern_tracker.operators, pattern_tracker.sinks;"
                          "from pattern_tracker import PatternTracker; print(pattern_tracker.__file__)"],
                         cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(installed["site"])
    helped = _run(installed, "--help", env=env)
    assert helped.returncode == 0
    text = helped.stdout.decode()
    assert "run" in text and "hook" in text
    assert str(REPO) not in text


def test_config_show_reads_the_shipped_defaults(installed, tmp_path) -> None:
    env = cli_env(tmp_path / "data")
    shown = _run(installed, "config", "show", env=env)
    assert shown.returncode == 0, shown.stderr.decode()
    text = shown.stdout.decode()
    assert re.search(r"resilience\.retry\.base_delay", text)
    assert "default (" in text  # every value carries its origin
    assert str(REPO) not in text


def test_hook_then_run_then_serve_from_the_wheel(installed, tmp_path) -> None:
    data = tmp_path / "data"
    env = cli_env(data)
    project = installed["cwd"] / "proj"
    project.mkdir(exist_ok=True)
    target = project / "app.py"
    target.write_text("def f():\n    return 1\n")
    payload = {"session_id": "s1", "hook_event_name": "PostToolUse", "tool_name": "Write", "cwd": str(project),
               "tool_input": {"file_path": str(target), "content": target.read_text()},
               "tool_response": {"filePath": str(target)}}
    hooked = _run(installed, "hook", env=env, input=json.dumps(payload).encode())
    assert hooked.returncode == 0 and hooked.stdout == b"" and hooked.stderr == b""
    stats = _run(installed, "cache", "stats", "--json", env=env)
    assert stats.returncode == 0, stats.stderr.decode()

    # `run` (the main job) over the project: the hook's queued edit and a new file both reach the
    # embedded store; Ctrl-C-like SIGINT ends it cleanly.
    proc = subprocess.Popen([str(installed["venv"] / "bin" / "pattern-tracker"), "run", str(project)],
                            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        (project / "other.py").write_text("x = 1\n")

        def both_delivered() -> bool:
            q = [_run(installed, "query", "--file", str(project / name), env=env) for name in ("app.py", "other.py")]
            return all(r.returncode == 0 and re.search(rb": [1-9]\d* version", r.stdout) for r in q)

        wait_for(both_delivered, timeout=30, interval=0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 0, err[-2000:]
    assert "Traceback" not in err

    # `serve` starts from the wheel and answers the Phase 4 health endpoint.
    with serve(tmp_path / "served", script=installed["venv"] / "bin" / "pattern-tracker", cwd=installed["cwd"]) as url:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=10) as resp:
            assert json.loads(resp.read())["status"] in ("healthy", "degraded")
        # ... and the lineage explorer's pages and their vendored scripts, from the package's data.
        for path in ("/ui/", "/ui/static/explorer/files.js", "/ui/static/vendor/highlightjs/highlight.min.js"):
            with urllib.request.urlopen(url.rstrip("/") + path, timeout=10) as resp:
                assert resp.status == 200 and resp.read(), path
