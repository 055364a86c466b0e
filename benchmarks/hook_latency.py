"""Wall time of `pattern-tracker hook` from process start to exit, as Claude Code runs it.

    python -m benchmarks.hook_latency [--runs 200]

Conditions, interleaved run by run (the machine is shared and noisy): the bare interpreter
(`python -c pass`, the same venv Python); the hook with the service up and `pattern-tracker run`
holding the drain lease (the usual set-up: hooks start no drainer); with the service up and no
pipeline running (hooks start detached drainers, which then compete for the 2 cores); with the
service down (connection refused); and with the circuit forced open. Each hook run records a new version of a file (a real Write payload). Also prints
the import budget of the hook (`python -X importtime`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import BIN, RESULTS, free_port, machine, serve, write_result


def payload(root: Path, i: int) -> bytes:
    return json.dumps({
        "session_id": "bench-session", "transcript_path": "/dev/null", "cwd": str(root),
        "hook_event_name": "PostToolUse", "tool_name": "Write", "tool_use_id": f"toolu_bench_{i}",
        "tool_input": {"file_path": str(root / f"mod{i % 20}.py"),
                       "content": f"def handler_{i}(event):\n    return {{'status': 200, 'n': {i}}}\n" * 20},
        "tool_response": {"type": "update"},
    }).encode()


def env_for(base: Path, name: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATTERN_TRACK", "INTELLIGENCE_"))}
    env.update(PATTERN_TRACKER_DATA_DIR=str(base / name), XDG_CACHE_HOME=str(base / "cache"), **extra)
    return env


def timed(args: list[str], env: dict[str, str], stdin: bytes) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, input=stdin, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def import_budget(env: dict[str, str], body: bytes) -> list[tuple[float, str]]:
    """(cumulative ms, module) for every import of one hook run, largest first."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "pattern_tracker.main", "hook"], input=body, env=env,
                         capture_output=True).stderr.decode()
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1].strip()) / 1000, parts[2].rstrip()))
    return sorted(rows, reverse=True)


def main(runs: int) -> tuple[str, dict[str, object]]:
    base = Path(tempfile.mkdtemp(prefix="pt-hook-bench-"))
    root = base / "proj"
    root.mkdir()
    hook = [str(BIN), "hook"]
    bare = [sys.executable, "-c", "pass"]
    results: dict[str, list[float]] = {"bare": [], "run": [], "up": [], "down": [], "open": []}
    with serve(base / "service") as url:
        envs = {
            "run": env_for(base, "run", PATTERN_TRACKING_API_URL=url),
            "up": env_for(base, "up", PATTERN_TRACKING_API_URL=url),
            "down": env_for(base, "down", PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{free_port()}"),
            "open": env_for(base, "open", PATTERN_TRACKING_API_URL=url),
        }
        subprocess.run([str(BIN), "circuit", "open"], env=envs["open"], stdout=subprocess.DEVNULL, check=True)
        # The running pipeline: stdin stays open, so it runs (and holds the lease) until stopped.
        pipeline = subprocess.Popen([str(BIN), "run", "--source", "stdin"], env=envs["run"], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)
        for name, env in envs.items():  # warm the settings cache and the bytecode
            timed(hook, env, payload(root, 0))
        for i in range(1, runs + 1):
            results["bare"].append(timed(bare, envs["up"], b""))
            for name, env in envs.items():
                results[name].append(timed(hook, env, payload(root, i)))
            time.sleep(0.05)  # edits are seconds apart: let a started drainer get going before the next round
        budget = import_budget(envs["open"], payload(root, runs + 1))
        pipeline.terminate()
        pipeline.wait(30)
        time.sleep(1.0)  # let the last drainers finish before the service goes
    shutil.rmtree(base, ignore_errors=True)
    bare_median = statistics.median(results["bare"])
    labels = {"bare": "bare `python -c pass`", "run": "hook, service up, `run` holds the lease",
              "up": "hook, service up, hooks start drainers", "down": "hook, service down (refused)",
              "open": "hook, circuit open"}
    lines = [
        f"### Hook latency ({runs} runs per condition, interleaved; Write payloads of ~1.4 KB)",
        "",
        "| condition | median ms | p99 ms | median / bare |",
        "|---|---:|---:|---:|",
    ]
    for key in ("bare", "run", "up", "down", "open"):
        xs = results[key]
        lines.append(f"| {labels[key]} | {statistics.median(xs) * 1000:.1f} | {pct(xs, 0.99) * 1000:.1f} | "
                     f"{statistics.median(xs) / bare_median:.2f}× |")
    total_imports = sum(ms for ms, name in budget if not name.startswith("  "))
    lines += ["", f"Import budget of the hook (`python -X importtime -m pattern_tracker.main hook`, top-level imports "
              f"{total_imports:.1f} ms; the ten largest cumulative entries):", "", "```"]
    lines += [f"{ms:7.2f} ms  {name}" for ms, name in budget[:10]]
    lines += ["```", "", f"Machine: {machine()}."]
    data = {"runs": runs, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "median_ms": {k: statistics.median(xs) * 1000 for k, xs in results.items()},
            "p99_ms": {k: pct(xs, 0.99) * 1000 for k, xs in results.items()}}
    return "\n".join(lines), data


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    table, data = main(ap.parse_args().runs)
    print(table)
    print(f"written to {write_result('hook_latency', table)}")
    (RESULTS / "hook_latency.json").write_text(json.dumps(data, indent=2) + "\n")
