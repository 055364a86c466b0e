"""Two installs of pattern-tracker side by side: before and after a change, interleaved in one run.

    python -m benchmarks.compare_installs BEFORE/bin/pattern-tracker AFTER/bin/pattern-tracker
        [--hooks N] [--events N] [--serve-events N] [--rounds R]

Make the BEFORE install from a worktree of the old commit (``git worktree add /tmp/old REV``,
then a venv with the project installed). Each figure alternates the two installs (ABAB… for hooks,
ABBA… for the replays), so the load of a shared machine falls on both alike:

- hook: wall time of ``pattern-tracker hook`` on a Write payload (no drainer started), N runs each;
- null sink: events per CPU-second (user + sys) of ``replay --sink null`` over one archive;
- serve: events/s of ``replay`` into a fresh ``serve`` of the same install.

The figures go to benchmarks/results/compare_installs.json too (``benchmarks.targets`` judges "the
hook does not regress" by them); ``make bench PT_BENCH_BEFORE=OLD/bin/pattern-tracker`` runs this
comparison against the running install as part of the run.

Both installs read the archive the AFTER install generates (the archive format is stable).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import RESULTS, machine, serve


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.n = 0
        self.config = work / "config.yaml"
        self.config.write_text("hook:\n  spawn_drainer: false\napi:\n  url: null\n")

    def env(self) -> dict[str, str]:
        """A private data directory per call; no inherited settings, no user config file."""
        self.n += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PATTERN_", "CIRCUIT_", "OTEL_"))}
        env.update(PATTERN_TRACKER_DATA_DIR=str(self.work / f"data-{self.n}"), XDG_CONFIG_HOME=str(self.work / "xdg"),
                   XDG_CACHE_HOME=str(self.work / "cache"))
        return env

    def generate(self, script: str, events: int, name: str) -> Path:
        out = self.work / name
        subprocess.run([script, "archive", "generate", "--events", str(events), "--files", "300", str(out)],
                       env=self.env(), check=True, capture_output=True)
        return out

    def hook(self, script: str, env: dict[str, str], i: int) -> float:
        project = self.work / "project"
        project.mkdir(exist_ok=True)
        path = project / f"f{i % 9}.py"
        code = f"x = {i}\n"
        path.write_text(code)
        body = json.dumps({"session_id": "bench", "hook_event_name": "PostToolUse", "tool_name": "Write",
                           "cwd": str(project), "tool_input": {"file_path": str(path), "content": code},
                           "tool_response": {"filePath": str(path)}}).encode()
        started = time.perf_counter()
        subprocess.run([script, "hook", "--config", str(self.config)], input=body, env=env, cwd=project, check=True)
        return time.perf_counter() - started

    def replay_null(self, script: str, archive: Path, events: int) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([script, "replay", str(archive), "--sink", "null", "--json", "--config", str(self.config)],
                       env=self.env(), check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return events / ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))

    def replay_serve(self, script: str, archive: Path) -> float:
        env = self.env()
        with serve(Path(env["PATTERN_TRACKER_DATA_DIR"]), script, env) as url:
            config = self.work / "serve.yaml"
            config.write_text(f"hook:\n  spawn_drainer: false\napi:\n  url: {url}\n")
            started = time.perf_counter()
            done = subprocess.run([script, "replay", str(archive), "--json", "--config", str(config)], env=self.env(),
                                  capture_output=True, text=True, check=True)
            summary = json.loads(done.stdout)
            return (summary["delivered"] + summary.get("already_existed", 0)) / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="the BEFORE install's pattern-tracker script")
    ap.add_argument("after", help="the AFTER install's pattern-tracker script")
    ap.add_argument("--hooks", type=int, default=300, help="hook runs per install (default 300)")
    ap.add_argument("--events", type=int, default=100_000, help="archive size for the null sink (default 100,000)")
    ap.add_argument("--serve-events", type=int, default=20_000, help="archive size for serve (default 20,000)")
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds of each replay figure (default 2)")
    args = ap.parse_args()
    installs = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}  # hooks run in a project dir
    work = Path(tempfile.mkdtemp(prefix="compare-installs-"))
    try:
        bench = Bench(work)
        hooks: dict[str, list[float]] = {k: [] for k in installs}
        envs = {k: bench.env() for k in installs}  # one data directory each: a hook adds to a spool
        for i in range(args.hooks):
            for k in (("before", "after") if i % 2 == 0 else ("after", "before")):
                hooks[k].append(bench.hook(installs[k], envs[k], i))
        big = bench.generate(args.after, args.events, "null-archive")
        small = bench.generate(args.after, args.serve_events, "serve-archive")
        null: dict[str, list[float]] = {k: [] for k in installs}
        served: dict[str, list[float]] = {k: [] for k in installs}
        for k in ["before", "after", "after", "before"] * args.rounds:
            null[k].append(bench.replay_null(installs[k], big, args.events))
            served[k].append(bench.replay_serve(installs[k], small))
        print(f"{'':8} {'hook median':>12} {'hook p99':>9} {'null ev/CPU-s':>14} {'serve ev/s':>11}")
        figures: dict[str, dict[str, float]] = {}
        for k in installs:
            h = sorted(hooks[k][5:])
            figures[k] = {"hook_median_ms": statistics.median(h) * 1000, "hook_p99_ms": h[int(len(h) * 0.99) - 1] * 1000,
                          "null_events_per_cpu_s": statistics.mean(null[k]), "serve_events_per_s": statistics.mean(served[k])}
            f = figures[k]
            print(f"{k:8} {f['hook_median_ms']:10.1f}ms {f['hook_p99_ms']:7.1f}ms "
                  f"{f['null_events_per_cpu_s']:14,.0f} {f['serve_events_per_s']:11,.0f}")
        ratio = {name: figures["after"][name] / figures["before"][name] for name in figures["after"]}
        print("after / before: " + ", ".join(f"{name} {value:.3f}" for name, value in ratio.items()))
        # For benchmarks.targets (issue 14: the hook does not regress), with what was compared.
        (RESULTS / "compare_installs.json").write_text(json.dumps(
            {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "installs": installs,
             "hooks": args.hooks, "events": args.events, "serve_events": args.serve_events, "rounds": args.rounds,
             **figures, "after_over_before": ratio}, indent=2) + "\n")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
