"""Replay throughput: the full pipeline next to a hand-written ceiling, a per-event client and the
null sink — all measured in one run, side by side, against `serve` in another process.

    python -m benchmarks.replay_throughput [--events N] [--rss-events M] [--per-event K] [--rounds R]

* (full) `pattern-tracker replay ARCHIVE --json` to `serve` (subprocess; events/s from its JSON
  and from our own clock; its CPU seconds, user + sys, per 10k delivered events).
* (a) ceiling: a minimal asyncio loop reading the same archive, posting the same batch bodies
  (`to_batch_request` + msgspec, pattern_tracking.batch_size events, api.max_concurrency
  requests in flight) over ONE aiohttp ClientSession, no retries (subprocess, its CPU too).
* (b) status quo: one POST per event to /lineage/track, stdlib `json.dumps` per event, a retry
  loop (3 attempts, exponential backoff), one request at a time — on K events, next to (full) over
  a K-event archive (like for like: serve slows down as its store grows).
* (c) `pattern-tracker replay ARCHIVE --sink null --json`: the pipeline's own ceiling.
* (c0) reading and decoding the archive alone (`Archive.chunks`, nothing else): the bound under (c).
* peak RSS of `replay --sink null` over an archive of M events: its VmHWM and the peak
  of RssAnon / RssFile sampled from /proc/PID/status.

The hand-written clients live in `benchmarks.replay_clients`. (full) and (a), and (c) and (c0),
run in ABBA rounds and their means are compared: the machine is shared and its speed drifts.
Archives are generated once per (events, files, seed) into $TMPDIR/pt-bench-archives and reused
(they are large: ~8.6 KB of code per event on average; `--drop-archives` deletes them at the end).
Every measurement gets a fresh data directory and a fresh `serve`. Results: replay_throughput.md
and .json in benchmarks/results (the JSON feeds `benchmarks.targets`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import BIN, machine, serve, write_result

ARCHIVES = Path(tempfile.gettempdir()) / "pt-bench-archives"
# The targets this benchmark reports (issue 14: null_over_decode, client_cpu_ratio, full_over_per_event,
# rss_mib; earlier ones: full_over_ceiling, null_events_per_s).
TARGETS = {"full_over_ceiling": 0.85, "full_over_per_event": 20.0, "null_events_per_s": 200_000, "rss_mib": 150,
           "null_over_decode": 0.55, "client_cpu_ratio": 1.3}


# -- shared helpers (also used by benchmarks.outage_recovery) -----------------------------------

def archive_for(events: int, files: int = 500, seed: int = 1) -> Path:
    """A deterministic archive of ``events`` events, generated once and reused."""
    path = ARCHIVES / f"events-{events}-files-{files}-seed-{seed}"
    if (path / ".complete").exists():
        print(f"   reusing archive {path}", flush=True)
        return path
    shutil.rmtree(path, ignore_errors=True)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([str(BIN), "archive", "generate", "--events", str(events), "--files", str(files), "--seed", str(seed),
                    str(tmp)], check=True, stdout=subprocess.DEVNULL)
    tmp.rename(path)
    (path / ".complete").touch()
    print(f"   generated archive {path} ({time.perf_counter() - t0:.1f}s, {dir_size(path) / 2**20:,.0f} MiB)", flush=True)
    return path


def warm(path: Path) -> None:
    """Read the archive's files once, so the figures measure the pipeline, not the disk (a 1M-event
    archive is ~24 GB and pushes the smaller one out of the page cache). Before every measured run:
    serve's data directories of the runs before can push it out too (once, a (c) round read it from
    disk at 7.5k events/s, the next at 70k)."""
    t0 = time.perf_counter()
    for p in path.iterdir():
        if p.is_file():
            with open(p, "rb", buffering=0) as f:
                while f.read(8 * 2**20):
                    pass
    print(f"   read {path.name} into the page cache ({time.perf_counter() - t0:.1f}s)", flush=True)


def dir_size(path: Path) -> int:
    return sum(os.stat(p).st_blocks * 512 for p in path.iterdir() if p.is_file())


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / RssAnon / RssFile / RssShmem of ``pid`` in KiB ({} once it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return out


class Child:
    """A finished subprocess: exit code, stdout, wall seconds, peak RSS and /proc peaks (KiB), and
    its CPU seconds (user + sys, from wait4: the child's own, whatever else the machine runs)."""

    def __init__(self, rc: int, stdout: str, stderr: str, wall: float, maxrss_kb: int, peaks: dict[str, int],
                 cpu_s: float = 0.0) -> None:
        self.rc, self.stdout, self.stderr, self.wall, self.maxrss_kb, self.peaks = rc, stdout, stderr, wall, maxrss_kb, peaks
        self.cpu_s = cpu_s

    def json(self) -> dict[str, Any]:
        lines = [ln for ln in self.stdout.splitlines() if ln.startswith("{")]
        if self.rc != 0 or not lines:
            raise RuntimeError(f"child failed (exit {self.rc}):\n{self.stdout[-2000:]}\n{self.stderr[-4000:]}")
        return json.loads(lines[-1])


def run_child(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800, sample: float = 0.05) -> Child:
    """Run ``cmd``, sampling /proc/PID/status (VmHWM and the current RSS split) until it exits."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        peaks: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            for k, v in proc_status(proc.pid).items():
                peaks[k] = max(peaks.get(k, 0), v)
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise RuntimeError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}")
            time.sleep(sample)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        # Peak RSS = the child's own high-water mark (VmHWM, last sample before it exited).
        # ru_maxrss is not used: Linux carries the parent's RSS at fork over the exec, so every
        # child of a large benchmark process would report at least the parent's size.
        return Child(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), wall,
                     peaks.get("VmHWM") or int(usage.ru_maxrss), peaks, usage.ru_utime + usage.ru_stime)


def child_env(data_dir: Path, url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATTERN_TRACKER__")}
    env.update({"PATTERN_TRACKER_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **extra})
    env.pop("PATTERN_TRACKING_API_URL", None)
    env.pop("INTELLIGENCE_SERVICE_URL", None)
    if url:
        env["PATTERN_TRACKING_API_URL"] = url
    return env


def pipeline_settings() -> tuple[int, int]:
    """(pattern_tracking.batch_size, api.max_concurrency) of the configuration `replay` uses."""
    from pattern_tracker.settings.config import load_config

    cfg = load_config(None).config
    return int(cfg.pattern_tracking.batch_size), int(cfg.api.max_concurrency)


# -- the benchmark ------------------------------------------------------------------------------

def _metrics(data_dir: Path) -> dict[str, Any]:
    out = subprocess.run([str(BIN), "metrics", "--json"], env=child_env(data_dir), capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def _mib(kb: int | None) -> str:
    return "–" if not kb else f"{kb / 1024:,.0f}"


def _ok(met: bool) -> str:
    return "**met**" if met else "**not met**"


def _rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The first round's details with events/s (and CPU per 10k events, when measured) = the mean
    over the rounds (each round's rate kept in ``rounds``)."""
    rates = [res["events_per_second"] for res in results]
    out = {**results[0], "events_per_second": sum(rates) / len(rates), "rounds": rates}
    if all("cpu_per_10k" in res for res in results):
        cpu = [res["cpu_per_10k"] for res in results]
        out.update(cpu_per_10k=sum(cpu) / len(cpu), cpu_rounds=cpu)
    return out


def _client(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.replay_clients", name, *args]


def main(n: int, m: int, k: int, files: int, seed: int, drop: bool, rounds: int = 2) -> tuple[str, dict[str, Any]]:
    batch_size, concurrency = pipeline_settings()
    print(f"-- archives ({n}, {m} and {min(k, n)} events)", flush=True)
    arch = archive_for(n, files, seed)
    arch_m = archive_for(m, files, seed)
    arch_k = archive_for(min(k, n), files, seed)
    warm(arch)
    root = Path(tempfile.mkdtemp(prefix="pt-bench-replay-"))
    r: dict[str, Any] = {"events": n, "rss_events": m, "per_event_events": min(k, n), "batch_size": batch_size,
                         "concurrency": concurrency, "archive_mib": dir_size(arch) / 2**20, "machine": machine(),
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": rounds}
    try:
        def full(tag: str, archive: Path, events: int) -> dict[str, Any]:
            print(f"-- (full{tag}) pattern-tracker replay of {events} events → serve", flush=True)
            warm(archive)
            with serve(root / f"svc-full{tag}") as url:
                c = run_child([str(BIN), "replay", str(archive), "--json"], child_env(root / f"full{tag}", url))
            out = c.json()
            done = out["delivered"] + out["already_existed"]
            assert done == events and out["left_in_spool"] == 0, out
            met = _metrics(root / f"full{tag}")
            return {"events": events, "events_per_second": out["events_per_second"],
                    "own_clock_events_per_second": events / c.wall, "seconds": out["seconds"], "wall": c.wall,
                    "cpu_s": c.cpu_s, "cpu_per_10k": c.cpu_s / done * 10_000,
                    "maxrss_kb": c.maxrss_kb, "peaks": c.peaks,
                    "latency_p50_ms": met["response_time_ms"]["p50_ms"], "latency_p99_ms": met["response_time_ms"]["p99_ms"],
                    "requests": met["total_requests"], "retry_attempts": met["retry_attempts"]}

        def ceiling(i: int) -> dict[str, Any]:
            print(f"-- (a) ceiling: hand-written asyncio loop → serve (round {i + 1})", flush=True)
            warm(arch)
            with serve(root / f"svc-ceiling-{i}") as url:
                c = run_child(_client("ceiling", str(arch), "--url", url, "--batch-size", str(batch_size),
                                      "--concurrency", str(concurrency)))
            out = c.json()
            return {**out, "wall": c.wall, "cpu_s": c.cpu_s, "cpu_per_10k": c.cpu_s / max(1, out["ok"]) * 10_000,
                    "maxrss_kb": c.maxrss_kb, "peaks": c.peaks}

        def null(i: int) -> dict[str, Any]:
            print(f"-- (c) pattern-tracker replay --sink null (round {i + 1})", flush=True)
            warm(arch)
            c = run_child([str(BIN), "replay", str(arch), "--sink", "null", "--json"], child_env(root / f"null-{i}"))
            out = c.json()
            assert out["delivered"] == n, out
            return {"events_per_second": out["events_per_second"], "own_clock_events_per_second": n / c.wall,
                    "seconds": out["seconds"], "wall": c.wall, "cpu_s": c.cpu_s, "maxrss_kb": c.maxrss_kb,
                    "peaks": c.peaks}

        def decode(i: int) -> dict[str, Any]:
            print(f"-- (c0) read + decode the archive alone (round {i + 1})", flush=True)
            warm(arch)
            c = run_child(_client("decode", str(arch), "--batch-size", str(batch_size)))
            return {**c.json(), "cpu_s": c.cpu_s, "maxrss_kb": c.maxrss_kb}

        # Both pairs share the machine, whose speed drifts: ABBA order (A, B, B, A, …) and the mean
        # of the rounds, so a drift does not favour either side.
        def abba(a: Any, b: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            xs: list[dict[str, Any]] = []
            ys: list[dict[str, Any]] = []
            for i in range(rounds):
                if i % 2 == 0:
                    xs.append(a(i))
                    ys.append(b(i))
                else:
                    ys.append(b(i))
                    xs.append(a(i))
            return xs, ys

        fulls, ceilings = abba(lambda i: full(f", round {i + 1}", arch, n), ceiling)
        r["full"], r["ceiling"] = _rounds(fulls), _rounds(ceilings)

        # (b) is slow (one durable request per event), so it sends only the first K events, into an
        # empty store; the full pipeline also runs over a K-event archive, for a ratio at equal size.
        kk = min(k, n)
        r["full_k"] = full(f", {kk}-event archive", arch_k, kk)

        print(f"-- (b) per-event client → serve ({min(k, n)} events)", flush=True)
        with serve(root / "svc-per-event") as url:
            c = run_child(_client("per-event", str(arch), "--url", url, "--limit", str(min(k, n))))
        r["per_event"] = {**c.json(), "wall": c.wall, "maxrss_kb": c.maxrss_kb}

        nulls, decodes = abba(null, decode)
        r["null"], r["decode"] = _rounds(nulls), _rounds(decodes)

        print(f"-- peak RSS: pattern-tracker replay --sink null over {m} events", flush=True)
        c = run_child([str(BIN), "replay", str(arch_m), "--sink", "null", "--json"], child_env(root / "rss"),
                      sample=0.02)
        out = c.json()
        assert out["delivered"] == m, out
        r["rss"] = {"events_per_second": out["events_per_second"], "seconds": out["seconds"], "maxrss_kb": c.maxrss_kb,
                    "peaks": c.peaks, "archive_mib": dir_size(arch_m) / 2**20}
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if drop:
            shutil.rmtree(arch, ignore_errors=True)
            shutil.rmtree(arch_m, ignore_errors=True)

    full, per, ceil = r["full"], r["per_event"], r["ceiling"]
    r["ratios"] = {"full_over_ceiling": full["events_per_second"] / ceil["events_per_second"],
                   "full_over_per_event": r["full_k"]["events_per_second"] / per["events_per_second"],
                   "full_n_over_per_event_k": full["events_per_second"] / per["events_per_second"],
                   "null_over_decode": r["null"]["events_per_second"] / r["decode"]["events_per_second"],
                   "null_over_decode_rounds": [a / b for a, b in zip(r["null"]["rounds"], r["decode"]["rounds"])],
                   "client_cpu_ratio": full["cpu_per_10k"] / ceil["cpu_per_10k"]}
    return table(r), r


def table(r: dict[str, Any]) -> str:
    full, ceil, per, null, rss, dec = r["full"], r["ceiling"], r["per_event"], r["null"], r["rss"], r["decode"]
    fk = r["full_k"]
    ratios = r["ratios"]
    fc, fp, nd, cc = (ratios["full_over_ceiling"], ratios["full_over_per_event"], ratios["null_over_decode"],
                      ratios["client_cpu_ratio"])
    null_rate = null["events_per_second"]
    p = rss["peaks"]
    rss_mb = rss["maxrss_kb"] * 1024 / 1e6
    return "\n".join([
        f"### Replay throughput ({r['events']:,} archived events, {r['archive_mib']:,.0f} MiB, code 100 B–50 KB "
        f"log-uniform over 500 files; batch {r['batch_size']}, {r['concurrency']} concurrent requests; "
        f"`serve` in another process, fresh data directories)",
        "",
        "| variant | events | events/s | seconds | CPU s per 10k events | latency p50 / p99 ms | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| (full) `pattern-tracker replay --json` → serve | {r['events']:,} | {full['events_per_second']:,.0f} "
        f"(rounds: {_each(full)}; own clock incl. start-up, round 1: {full['own_clock_events_per_second']:,.0f}) | "
        f"{full['seconds']:.2f} | {full['cpu_per_10k']:.3f} (rounds: {_each_cpu(full)}) | "
        f"{_fmt(full['latency_p50_ms'])} / {_fmt(full['latency_p99_ms'])} (per request, bucket bounds) | {_mib(full['maxrss_kb'])} |",
        f"| (a) ceiling: asyncio loop, same batch bodies, one ClientSession, no retries | {ceil['events']:,} | "
        f"{ceil['events_per_second']:,.0f} (rounds: {_each(ceil)}) | {ceil['seconds']:.2f} | "
        f"{ceil['cpu_per_10k']:.3f} (rounds: {_each_cpu(ceil)}) | {ceil['latency_p50_ms']:.1f} / {ceil['latency_p99_ms']:.1f} "
        f"(per request) | {_mib(ceil['maxrss_kb'])} |",
        f"| (full, first K) the same over a {fk['events']:,}-event archive → serve | {fk['events']:,} | "
        f"{fk['events_per_second']:,.0f} | {fk['seconds']:.2f} | {fk['cpu_per_10k']:.3f} | – | {_mib(fk['maxrss_kb'])} |",
        f"| (b) per-event client: 1 POST per event, stdlib json, 3 attempts | {per['events']:,} | "
        f"{per['events_per_second']:,.0f} | {per['seconds']:.2f} | – | {per['latency_p50_ms']:.1f} / {per['latency_p99_ms']:.1f} "
        f"(per event) | {_mib(per['maxrss_kb'])} |",
        f"| (c) `pattern-tracker replay --sink null` | {r['events']:,} | {null_rate:,.0f} (rounds: {_each(null)}) | "
        f"{null['seconds']:.2f} | – | – | {_mib(null['maxrss_kb'])} |",
        f"| (c0) reading + decoding the archive alone, no pipeline | {dec['events']:,} | {dec['events_per_second']:,.0f} "
        f"(rounds: {_each(dec)}) | {dec['seconds']:.2f} | – | – | {_mib(dec['maxrss_kb'])} |",
        "",
        "| target | measured | compared to | |",
        "|---|---:|---|---|",
        f"| (c) / (c0) ≥ {TARGETS['null_over_decode']}: the pipeline into the null sink beside reading + decoding "
        f"alone (mean rates of {r.get('rounds', 1)} ABBA rounds) | {nd:.2f} (rounds: "
        f"{', '.join(f'{x:.2f}' for x in ratios['null_over_decode_rounds'])}) | (c0) {dec['events_per_second']:,.0f} events/s "
        f"| {_ok(nd >= TARGETS['null_over_decode'])} |",
        f"| (full) / (a) CPU seconds per 10k delivered events ≤ {TARGETS['client_cpu_ratio']} (the replay process "
        f"alone, user + sys) | {cc:.2f} ({full['cpu_per_10k']:.3f} / {ceil['cpu_per_10k']:.3f} s) | (a) "
        f"{ceil['cpu_per_10k']:.3f} s | {_ok(cc <= TARGETS['client_cpu_ratio'])} |",
        f"| full / (a) ≥ {TARGETS['full_over_ceiling']}, events/s | {fc:.2f} | (a) {ceil['events_per_second']:,.0f} "
        f"events/s | {_ok(fc >= TARGETS['full_over_ceiling'])} |",
        f"| full / (b) ≥ {TARGETS['full_over_per_event']:.0f}×, both over {fk['events']:,} events into an empty store | "
        f"{fp:.1f}× | (b) {per['events_per_second']:,.0f} events/s | {_ok(fp >= TARGETS['full_over_per_event'])} |",
        f"| full over {r['events']:,} events / (b) over {fk['events']:,} (the store grows, serve slows: not like for like) | "
        f"{ratios['full_n_over_per_event_k']:.1f}× | (b) | {_ok(ratios['full_n_over_per_event_k'] >= TARGETS['full_over_per_event'])} |",
        f"| null sink ≥ {TARGETS['null_events_per_s']:,} events/s | {null_rate:,.0f} | – | "
        f"{_ok(null_rate >= TARGETS['null_events_per_s'])} |",
        f"| peak RSS ≤ {TARGETS['rss_mib']} MB replaying {r['rss_events']:,} events (VmHWM) | {rss_mb:,.0f} MB | – | "
        f"{_ok(rss_mb <= TARGETS['rss_mib'])} |",
        "",
        f"(a) failures: {ceil['failed']} events failed in {ceil['http_errors']} HTTP errors + per-event failures "
        f"(no retries). (b) retries: {per['retries']}, failures: {per['failed']}. (full) requests: {full['requests']}, "
        f"events sent again: {full['retry_attempts']}. CPU seconds: user + sys of the process (start-up included), "
        f"from wait4.",
        "",
        f"Peak memory of `replay --sink null` over {r['rss_events']:,} events ({rss['archive_mib']:,.0f} MiB archive, "
        f"{rss['events_per_second']:,.0f} events/s, mostly read from disk): peak RSS (VmHWM) **{_mib(rss['maxrss_kb'])} MiB**; "
        f"sampled from /proc/PID/status: VmRSS {_mib(p.get('VmRSS'))} MiB = RssAnon {_mib(p.get('RssAnon'))} MiB (the process's own "
        f"heap) + RssFile {_mib(p.get('RssFile'))} MiB (mapped files: code, libraries, LMDB pages; each a separate "
        f"peak). The archive is read through LMDB's mmap; the replay gives the touched pages back every 32 MiB "
        f"(`madvise(MADV_DONTNEED)`, pipeline/core/mapped_pages.py), so RSS does not grow with the archive.",
        "",
        f"Machine: {r['machine']}.",
    ])


def _each(res: dict[str, Any]) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in res.get("rounds", [res["events_per_second"]]))


def _each_cpu(res: dict[str, Any]) -> str:
    return ", ".join(f"{cpu:.3f}" for cpu in res.get("cpu_rounds", [res["cpu_per_10k"]]))


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000, help="archive size for throughput (default 200,000)")
    ap.add_argument("--rss-events", type=int, default=1_000_000, help="archive size for peak RSS (default 1,000,000)")
    ap.add_argument("--per-event", type=int, default=20_000,
                    help="events sent by the per-event client, and the size of the like-for-like full run (default 20,000)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of (full) and (a), and of (c) and (c0), in ABBA order (default 2)")
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--drop-archives", action="store_true", help="delete the generated archives at the end")
    a = ap.parse_args()
    md, results = main(a.events, a.rss_events, a.per_event, a.files, a.seed, a.drop_archives, max(1, a.rounds))
    print(md)
    print(f"written to {write_result('replay_throughput', md)}")
    from benchmarks._common import RESULTS
    (RESULTS / "replay_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    from benchmarks.plot import plot_all
    plot_all()
