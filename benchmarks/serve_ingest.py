"""`serve`'s ingest into the embedded LMDB store: events/s into an empty store and into one of ~1M
nodes, for this install and (optionally) another one, side by side in one run.

    python -m benchmarks.serve_ingest [--before OTHER/bin/pattern-tracker] [--events N] [--nodes M] [--rounds R]

Each measurement starts `serve` (of the install measured) on a data directory and sends it an
archive of N events (default 20,000, 500 files) as batches of 100 (pattern_tracking.batch_size),
4 requests in flight (api.max_concurrency), over one aiohttp session: the batch bodies are encoded
before the clock starts, so the client costs little of the machine the two share. Figures:

- events/s (the client's clock), into a fresh data directory and into the big store;
- serve's CPU (user + sys) per event, from /proc/PID/stat;
- pages written per event: what serve passed to write calls (/proc/PID/io ``wchar``, minus the
  response bytes the client read) over the page size; LMDB writes each page it dirtied once
  per commit, so this is the store's B-tree cost per event (node overflow pages included).

The big store (M nodes, default 1,000,000, generated events over 20,000 files, ~8.6 KB of code
each) is built once per store layout straight through ``LineageStore.track_many`` (2,000 events
per transaction) by the install measured, under $TMPDIR/pt-bench-stores, and reused by later runs;
each measurement adds its N events to it, so every round sends a fresh archive (a new seed: a
re-sent event would only be answered ``already_exists``). The empty and big stores of a round get
the same archive. The installs and stores take turns, the order rotating each round, so the load
of a shared machine falls on all alike; the figure is the mean over the rounds.

``--before`` (default ``$PT_BENCH_BEFORE``, as ``make bench`` takes it): another install's
``pattern-tracker`` (e.g. a worktree of the commit before a change, ``git worktree add /tmp/base REV``
and a venv with it installed); its big store is built by it, in its own layout. Without one, only
this install is measured (the big/empty ratio; "2× today's" needs the A/B).

The first run builds each big store (~5-6 minutes and ~10 GB each on this machine); later runs
reuse them (each grows by N events per round).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import BIN, machine, tally_batch_answer, write_result

ROOT = Path(__file__).resolve().parent.parent
STORES = Path(tempfile.gettempdir()) / "pt-bench-stores"
ARCHIVES = Path(tempfile.gettempdir()) / "pt-bench-archives"
PREFIX = "/api/pattern-traceability"
TARGETS = {"after_over_before": 2.0, "big_over_empty": 0.8}
PAGE = 4096


# -- run by the install measured (python -m benchmarks.serve_ingest --fill / --layout) --------------

def fill(data_dir: str, nodes: int, files: int, seed: int) -> dict[str, Any]:
    """Build (or finish building) a store of ``nodes`` generated nodes through LineageStore.track_many."""
    from pattern_tracker.core.store import Store
    from pattern_tracker.model.events import to_track_request
    from pattern_tracker.sinks.lineage_store import LineageStore
    from pattern_tracker.usecases.archive_gen import generate

    store = Store.open(data_dir, max_map_size=1 << 40)
    lineage = LineageStore(store)
    done = lineage.count()  # resumable: the events are the same every time
    t0 = time.perf_counter()
    batch = []
    for i, ev in enumerate(generate(nodes, files, seed)):
        if i < done:
            continue
        batch.append(to_track_request(ev))
        if len(batch) == 2000:
            lineage.track_many(batch)
            batch = []
            if (i + 1) % 100_000 == 0:
                print(f"   {i + 1:,} nodes ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
    if batch:
        lineage.track_many(batch)
    return {"nodes": lineage.count(), "seconds": time.perf_counter() - t0, "added": lineage.count() - done}


def layout() -> int:
    """The store layout of the running install (layout 1 had no LAYOUT constant)."""
    from pattern_tracker.sinks import lineage_layout

    return int(getattr(lineage_layout, "LAYOUT", 1))


# -- the client (python -m benchmarks.serve_ingest --client URL --archive A) -----------------------

async def client(archive_path: str, base: str, batch_size: int, concurrency: int) -> dict[str, Any]:
    """Post the archive's batches (bodies encoded before the clock starts); count what came back."""
    import aiohttp

    from pattern_tracker.model.archive import Archive
    from pattern_tracker.model.events import batch_response_decoder, json_encoder, to_batch_request

    archive = Archive(archive_path)
    bodies = [(json_encoder.encode(to_batch_request(events)), len(events)) for events in archive.chunks(batch_size)]
    archive.close()
    url = f"{base}{PREFIX}/lineage/track/batch"
    headers = {"Content-Type": "application/json"}
    counts = {"events": 0, "ok": 0, "failed": 0, "http_errors": 0, "response_bytes": 0}
    queue = iter(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        for body, n in queue:
            async with session.post(url, data=body, headers=headers) as resp:
                raw = await resp.read()
                # what serve wrote to the socket for it: the body and (about) its header block
                counts["response_bytes"] += len(raw) + sum(len(k) + len(v) + 4 for k, v in resp.raw_headers) + 17
                status = resp.status
            counts["events"] += n
            tally_batch_answer(counts, status, raw, n, batch_response_decoder.decode)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return {**counts, "seconds": seconds, "events_per_second": counts["ok"] / seconds}


# -- the benchmark ------------------------------------------------------------------------------

class Install:
    """One install: its pattern-tracker script, its python, its store layout."""

    def __init__(self, name: str, script: Path) -> None:
        self.name = name
        self.script = script
        self.python = script.parent / "python"
        self.layout = int(self.run("--layout").strip())

    def run(self, *args: str, timeout: float = 7200) -> str:
        """``python -m benchmarks.serve_ingest ARGS`` with this install's pattern_tracker (cwd: the repository)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run([str(self.python), "-m", "benchmarks.serve_ingest", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def big_store(self, nodes: int, files: int) -> tuple[Path, dict[str, Any] | None]:
        """The install's layout's big store, built now when missing (with how long that took)."""
        path = STORES / f"layout{self.layout}-nodes{nodes}-files{files}"
        if (path / ".complete").exists():
            return path, None
        print(f"-- building a {nodes:,}-node store in layout {self.layout} at {path} ({self.name})", flush=True)
        built = json.loads(self.run("--fill", str(path), "--nodes", str(nodes), "--files", str(files)))
        (path / ".complete").write_text(json.dumps(built) + "\n")
        print(f"   built: {built['added']:,} nodes in {built['seconds']:.0f}s", flush=True)
        return path, built


def _proc(pid: int) -> tuple[float, int]:
    """(CPU seconds user + sys, bytes passed to write calls) of process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/io") as f:
        wchar = next(int(line.split()[1]) for line in f if line.startswith("wchar"))
    return cpu, wchar


@contextmanager
def serve(install: Install, data_dir: Path) -> Iterator[tuple[str, int]]:
    """`serve --port 0` of ``install`` on ``data_dir``; yields (base URL, pid)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATTERN_", "CIRCUIT_", "OTEL_"))}
    env.update(PATTERN_TRACKER_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([str(install.script), "serve", "--port", "0"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 600  # an old store is upgraded before serve listens
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline().decode()
            if not line and proc.poll() is not None:
                break
            m = re.search(r"serving Phase 4 API on (http://\S+)", line)
            url = m.group(1) if m else None
        if url is None:
            raise RuntimeError(f"serve of {install.name} did not start")
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def nodes_in(data_dir: Path) -> int:
    """Entries of the store's node db, whatever its layout (read-only)."""
    import lmdb

    if not (data_dir / "data.mdb").exists():
        return 0
    env = lmdb.open(str(data_dir), readonly=True, lock=False, max_dbs=32, subdir=True)
    try:
        with env.begin() as txn:
            total = 0
            for name in (b"lineage_log", b"lineage_nodes"):
                try:
                    total += int(txn.stat(env.open_db(name, txn=txn, create=False))["entries"])
                except lmdb.NotFoundError:
                    pass
            return total
    finally:
        env.close()


def measure(install: Install, data_dir: Path, archive: Path, events: int, batch: int, concurrency: int) -> dict[str, Any]:
    before = nodes_in(data_dir)
    with serve(install, data_dir) as (url, pid):
        cpu0, w0 = _proc(pid)
        out = subprocess.run([sys.executable, "-m", "benchmarks.serve_ingest", "--client", url, "--archive", str(archive),
                              "--batch-size", str(batch), "--concurrency", str(concurrency)],
                             cwd=ROOT, capture_output=True, text=True, timeout=3600)
        cpu1, w1 = _proc(pid)
    if out.returncode != 0:
        raise RuntimeError(f"client failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout)
    assert res["ok"] == events and res["failed"] == 0, res
    return {"events_per_second": res["events_per_second"], "nodes_before": before,
            "cpu_us_per_event": (cpu1 - cpu0) / events * 1e6,
            "pages_per_event": (w1 - w0 - res["response_bytes"]) / PAGE / events}


def archive_for(events: int, files: int, seed: int) -> Path:
    path = ARCHIVES / f"events-{events}-files-{files}-seed-{seed}"
    if (path / ".complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([str(BIN), "archive", "generate", "--events", str(events), "--files", str(files), "--seed", str(seed),
                    str(tmp)], check=True, stdout=subprocess.DEVNULL)
    tmp.rename(path)
    (path / ".complete").touch()
    return path


def next_seed() -> int:
    """A seed no earlier run sent to the big stores (they keep what they were sent)."""
    STORES.mkdir(parents=True, exist_ok=True)
    path = STORES / "next-seed"
    seed = int(path.read_text()) if path.exists() else 101
    path.write_text(f"{seed + 1}\n")
    return seed


def pipeline_settings() -> tuple[int, int]:
    """(pattern_tracking.batch_size, api.max_concurrency) of the default configuration."""
    from pattern_tracker.settings.config import load_config

    cfg = load_config(None).config
    return int(cfg.pattern_tracking.batch_size), int(cfg.api.max_concurrency)


def main(before: Path | None, events: int, nodes: int, rounds: int, files: int) -> tuple[str, dict[str, Any]]:
    batch, concurrency = pipeline_settings()
    installs = [Install("after", BIN)] + ([Install("before", before)] if before else [])
    built = {}
    big = {}
    for inst in installs:
        big[inst.name], built[inst.name] = inst.big_store(nodes, files)
    cells = [(inst, store) for inst in installs for store in ("empty", "big")]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(i.name, s): [] for i, s in cells}
    root = Path(tempfile.mkdtemp(prefix="pt-bench-ingest-"))
    try:
        for r in range(rounds):
            seed = next_seed()
            archive = archive_for(events, 500, seed)
            order = cells[r % len(cells):] + cells[:r % len(cells)]
            for inst, store in order:
                data = big[inst.name] if store == "big" else root / f"{inst.name}-{r}"
                res = measure(inst, data, archive, events, batch, concurrency)
                print(f"-- round {r + 1}, {inst.name}, {store} store ({res['nodes_before']:,} nodes): "
                      f"{res['events_per_second']:,.0f} events/s, {res['cpu_us_per_event']:.0f} µs CPU/event, "
                      f"{res['pages_per_event']:.2f} pages/event", flush=True)
                runs[(inst.name, store)].append(res)
                shutil.rmtree(root / f"{inst.name}-{r}", ignore_errors=True)
            shutil.rmtree(archive, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    r_out: dict[str, Any] = {"events": events, "nodes": nodes, "rounds": rounds, "batch_size": batch,
                             "concurrency": concurrency, "machine": machine(), "built": built,
                             "layouts": {i.name: i.layout for i in installs},
                             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for (name, store), results in runs.items():
        r_out[f"{name}_{store}"] = {k: sum(x[k] for x in results) / len(results)
                                    for k in ("events_per_second", "cpu_us_per_event", "pages_per_event")}
        r_out[f"{name}_{store}"]["rounds"] = [x["events_per_second"] for x in results]
        r_out[f"{name}_{store}"]["nodes_before"] = results[0]["nodes_before"]
    return table(r_out), r_out


def table(r: dict[str, Any]) -> str:
    names = [n for n in ("before", "after") if f"{n}_empty" in r]
    rows = []
    for name in names:
        for store in ("empty", "big"):
            x = r[f"{name}_{store}"]
            each = ", ".join(f"{e:,.0f}" for e in x["rounds"])
            rows.append(f"| {name} (layout {r['layouts'][name]}) | {store}: {x['nodes_before']:,} nodes | "
                        f"**{x['events_per_second']:,.0f}** | {each} | {x['cpu_us_per_event']:.0f} | "
                        f"{x['pages_per_event']:.2f} |")
    lines = [
        f"### serve's ingest into the embedded store ({r['events']:,} events per measurement, batches of "
        f"{r['batch_size']}, {r['concurrency']} in flight, bodies encoded before the clock; {r['rounds']} rounds, "
        "installs and stores interleaved)",
        "",
        "| install | store | events/s (mean) | rounds | serve CPU µs/event | pages written/event |",
        "|---|---|---:|---|---:|---:|",
        *rows,
        "",
    ]
    a_e, a_b = r["after_empty"]["events_per_second"], r["after_big"]["events_per_second"]
    ratio = a_b / a_e
    lines.append(f"- rate at {r['after_big']['nodes_before']:,} nodes / empty store (after): **{ratio:.2f}** "
                 f"(target ≥ {TARGETS['big_over_empty']}: {'met' if ratio >= TARGETS['big_over_empty'] else 'not met'})")
    if "before_empty" in r:
        b_e, b_b = r["before_empty"]["events_per_second"], r["before_big"]["events_per_second"]
        gain = a_e / b_e
        lines.append(f"- after / before, empty store: **{gain:.2f}×** (target ≥ {TARGETS['after_over_before']}×: "
                     f"{'met' if gain >= TARGETS['after_over_before'] else 'not met'}); at the big store: "
                     f"**{a_b / b_b:.2f}×**; before's own big / empty: {b_b / b_e:.2f}")
    for name, b in r["built"].items():
        if b:
            lines.append(f"- the {name} install's big store was built in this run: {b['added']:,} nodes in "
                         f"{b['seconds']:.0f} s through LineageStore.track_many")
    lines += ["", f"Machine: {r['machine']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, default=os.environ.get("PT_BENCH_BEFORE") or None,
                    help="another install's pattern-tracker script, measured side by side (default: $PT_BENCH_BEFORE)")
    ap.add_argument("--events", type=int, default=20_000, help="events per measurement (default 20,000)")
    ap.add_argument("--nodes", type=int, default=1_000_000, help="nodes of the big store (default 1,000,000)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds (default 4: its ratios sit near their targets and one round moves them by ~0.1)")
    ap.add_argument("--fill", help=argparse.SUPPRESS)
    ap.add_argument("--files", type=int, default=20_000, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--layout", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--archive", help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=100, help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, default=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.layout:
        print(layout())
    elif a.fill:
        print(json.dumps(fill(a.fill, a.nodes, a.files, a.seed)))
    elif a.client:
        print(json.dumps(asyncio.run(client(a.archive, a.client, a.batch_size, a.concurrency))))
    else:
        md, results = main(a.before, a.events, a.nodes, max(1, a.rounds), a.files)
        print(md)
        print(f"written to {write_result('serve_ingest', md)}")
        from benchmarks._common import RESULTS

        (RESULTS / "serve_ingest.json").write_text(json.dumps(results, indent=2) + "\n")
