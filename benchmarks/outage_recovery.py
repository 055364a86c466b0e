"""Outage recovery: replay N events to `serve` with an S-second outage in the middle; time to
drain after recovery, and events lost (must be 0).

    python -m benchmarks.outage_recovery [--events N] [--outage S] [--rate R] [--recovery-timeout T]

`serve` runs in another process on a fixed port. When it has stored half of the events it is
stopped (SIGTERM: connections are refused), and started again on the same port and the same data
directory S seconds later. The replay is paced (`--rate`, default 2,000 events/s, below live
throughput) so that the archive is still being read when the service comes back, and the
pipeline itself drains the backlog. Time to drain = from the service accepting connections again
to every event stored by `serve` with the replay's spool empty. Lost = events produced − events
stored by `serve` (counted from its LMDB store once it has stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import lmdb

from benchmarks._common import BIN, RESULTS, free_port, machine, write_result
from benchmarks.replay_throughput import archive_for, child_env, run_child


def start_serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PATTERN_TRACKER_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    f = open(log, "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=f)
    f.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if b"serving Phase 4 API on" in log.read_bytes().split(b"\n== ")[-1]:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"serve did not start:\n{log.read_text()[-3000:]}")


def stop_serve(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def entries(data_dir: Path, db: str) -> int:
    """Entries of LMDB database ``db`` in ``data_dir`` (read-only, opened and closed each call)."""
    if not (data_dir / "data.mdb").exists():
        return 0
    try:
        env = lmdb.open(str(data_dir), readonly=True, lock=True, max_dbs=32, subdir=True)
    except lmdb.Error:
        return 0
    try:
        with env.begin() as txn:
            try:
                handle = env.open_db(db.encode(), txn=txn, create=False)
            except lmdb.NotFoundError:
                return 0
            return int(txn.stat(handle)["entries"])
    except lmdb.Error:
        return -1
    finally:
        env.close()


def main(n: int, outage: float, rate: float | None, recovery_timeout: float, files: int, seed: int) -> tuple[str, dict[str, Any]]:
    print(f"-- archive ({n} events)", flush=True)
    arch = archive_for(n, files, seed)
    root = Path(tempfile.mkdtemp(prefix="pt-bench-outage-"))
    svc, data, log = root / "svc", root / "replay", root / "serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    timeline: list[tuple[float, int, int]] = []
    marks: dict[str, float] = {}
    try:
        proc = start_serve(svc, port, log)
        env = child_env(data, url, PATTERN_TRACKING_CACHE_SIZE=str(n * 2), PATTERN_TRACKING_CACHE_TTL="86400",
                        CIRCUIT_BREAKER_RECOVERY_TIMEOUT=str(recovery_timeout))
        cmd = [str(BIN), "replay", str(arch), "--json"] + (["--rate", str(rate)] if rate else [])
        result: dict[str, Any] = {}
        t0 = time.perf_counter()

        def replay() -> None:
            result["child"] = run_child(cmd, env, timeout=max(600, 10 * n / (rate or 1000)))
            result["ended"] = time.perf_counter() - t0

        th = threading.Thread(target=replay)
        th.start()
        print(f"-- replaying {n} events to serve on port {port}" + (f" at {rate:g} events/s" if rate else ""), flush=True)
        state = "before"
        while th.is_alive():
            now = time.perf_counter() - t0
            stored, spooled = entries(svc, "lineage_log") if state != "outage" else timeline[-1][1], entries(data, "spool")
            timeline.append((round(now, 3), stored, spooled))
            if state == "before" and stored >= n // 2:
                stop_serve(proc)
                marks["outage_start"] = time.perf_counter() - t0
                state = "outage"
                print(f"   {marks['outage_start']:.1f}s: serve stopped at {stored} stored events", flush=True)
            elif state == "outage" and now - marks["outage_start"] >= outage:
                with open(log, "ab") as f:
                    f.write(b"\n== restart\n")
                proc = start_serve(svc, port, log)
                marks["service_back"] = time.perf_counter() - t0
                state = "after"
                print(f"   {marks['service_back']:.1f}s: serve accepting connections again", flush=True)
            elif state == "after" and "drained_at" not in marks and stored >= n and spooled == 0:
                marks["drained_at"] = now
                print(f"   {now:.1f}s: every event stored, spool empty", flush=True)
            time.sleep(0.2)
        th.join()
        child = result["child"]
        out = child.json()
        drain_cmd: dict[str, Any] | None = None
        if out["left_in_spool"]:
            # The replay ended with a backlog (circuit still open at its end): the operator's drain.
            d = run_child([str(BIN), "drain", "--until-empty", "--json"], env, timeout=600)
            drain_cmd = {"rc": d.rc, "wall": d.wall, "stdout": d.stdout[-500:]}
            if "drained_at" not in marks:
                marks["drained_at"] = time.perf_counter() - t0
        if "drained_at" not in marks and entries(svc, "lineage_log") >= n and entries(data, "spool") == 0:
            marks["drained_at"] = time.perf_counter() - t0
        stop_serve(proc)
        stored = entries(svc, "lineage_log")
        spooled = entries(data, "spool")
        dead = entries(data, "dead_letter")
        timeline.append((round(time.perf_counter() - t0, 3), stored, spooled))
    finally:
        if "proc" in locals() and proc.poll() is None:
            stop_serve(proc)
        shutil.rmtree(root, ignore_errors=True)

    lost = n - stored
    r: dict[str, Any] = {
        "events": n, "outage": outage, "rate": rate, "recovery_timeout": recovery_timeout, "stored": stored, "lost": lost,
        "left_in_spool": spooled, "dead_lettered": dead, "replay": out, "replay_ended": result["ended"],
        "drain_command": drain_cmd, **marks,
        "outage_measured": marks["service_back"] - marks["outage_start"],
        "drain_seconds": marks["drained_at"] - marks["service_back"] if "drained_at" in marks else None,
        "timeline": timeline, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    spool_peak = max(p[2] for p in timeline)
    md = "\n".join([
        f"### Outage recovery ({n:,} archived events replayed to `serve` in another process"
        + (f" at {rate:,.0f} events/s" if rate else "") + f"; serve stopped for {outage:g} s once half were stored)",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| outage (serve stopped → accepting connections again on the same port) | {r['outage_measured']:.1f} s |",
        f"| peak backlog in the replay's spool | {spool_peak:,} events |",
        f"| **time to drain after recovery** (service back → all {n:,} stored, spool empty) | "
        f"**{_s(r['drain_seconds'])}** |",
        f"| replay process ended | {r['replay_ended']:.1f} s after start "
        f"({out['events_per_second']:,.0f} events/s overall, {out['seconds']:.1f} s) |",
        f"| events stored by serve / produced | {stored:,} / {n:,} |",
        f"| **events lost** | **{lost}** |",
        f"| dead-lettered / left in spool | {dead} / {spooled} |",
        "",
        f"Replay configuration: spool bound {2 * n:,} (so nothing is dropped by design), circuit recovery_timeout "
        f"{recovery_timeout:g} s (half-open trials start at most that long after the service returns; the default "
        f"60 s would add up to 60 s to the drain). "
        + ("`pattern-tracker drain --until-empty` was needed after the replay ended with a backlog. "
           if drain_cmd else "The replay drained its own backlog (no separate `drain`). ")
        + f"Machine: {machine()}.",
    ])
    return md, r


def _s(v: float | None) -> str:
    return "not drained" if v is None else f"{v:.1f} s"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--outage", type=float, default=10.0, help="seconds the service is down (default 10)")
    ap.add_argument("--rate", type=float, default=2000.0, help="replay pacing, events/s (0 = unpaced; default 2000)")
    ap.add_argument("--recovery-timeout", type=float, default=2.0, help="circuit breaker recovery_timeout, s (default 2)")
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    table, results = main(a.events, a.outage, a.rate or None, a.recovery_timeout, a.files, a.seed)
    print(table)
    print(f"written to {write_result('outage_recovery', table)}")
    (RESULTS / "outage_recovery.json").write_text(json.dumps(results, indent=2) + "\n")
    from benchmarks.plot import plot_all

    plot_all()
    print(f"events lost: {results['lost']}")
    assert results["lost"] == 0, f"{results['lost']} events lost"
