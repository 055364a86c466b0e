"""docs/chaos.md's first example, run as written (but on an ephemeral port, with a short schedule)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.clitools import BIN, cli_env, serve, stop, wait_for

DOC = (Path(__file__).resolve().parent.parent / "docs" / "chaos.md").read_text(encoding="utf-8")


def _example_env() -> dict[str, str]:
    """The variables the example gives every command it runs (exported), not one of them alone."""
    block = re.search(r"```sh\n(.*?)```", DOC, flags=re.DOTALL)
    assert block
    return dict(re.findall(r"^export (\w+)=(\S+)", block.group(1), flags=re.MULTILINE))


def test_the_status_terminal_of_the_example_sees_the_service_watch_delivers_to(tmp_path: Path) -> None:
    env_vars = _example_env()
    assert env_vars.get("PATTERN_TRACKING_API_URL") == "http://127.0.0.1:8053"
    schedule = tmp_path / "down.yaml"
    schedule.write_text("repeat: false\nphases:\n  - {name: down, duration: 30, faults: {outage: refused}}\n")
    with serve(tmp_path / "service", "--chaos", str(schedule)) as url:
        env = cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=url)
        src = tmp_path / "src"
        src.mkdir()
        watch = subprocess.Popen([str(BIN), "watch", str(src)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            def spooled_status() -> str:
                out = subprocess.run([str(BIN), "status"], env=env, capture_output=True, text=True, timeout=30,
                                     check=False).stdout
                return out if re.search(r"spool: +1 /", out) else ""

            (src / "a.py").write_text("x = 1\n")
            text = wait_for(spooled_status, timeout=30, what="the edit kept in the spool while the service refuses")
        finally:
            stop(watch)
    assert f"delivering to:  Phase 4 API {url}" in text
