"""The web UI's file listing at scale: pages of `GET /standin/v1/files` from `serve` (another
process) over a store of 100k nodes, timed over HTTP.

    python -m benchmarks.ui_listing [--nodes N] [--files F] [--limit L] [--repeat R]

The store is built directly with ``LineageStore.track_many`` (2,000 events per transaction): N
nodes over F files under a few project trees, each file a chain of versions whose count follows a
heavy-tailed spread (most files a few versions, some hundreds), ~1.5 KB of code per version.
Then `serve` opens it and one HTTP/1.1 keep-alive client times, from request to last body byte:

* the first page, R times;
* every page of the whole listing, following ``next`` (the walk a user paging to the end makes);
* a middle page and the last page, re-requested R times through their cursors;
* the first search (serve builds its in-memory list of paths), then a search matching a few
  hundred files and one matching none, R times each, and each right after a write through serve
  (the list takes the new file in) and after a write by another process (the list is rebuilt).

Target: every page under 100 ms (issue 12).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
import urllib.parse
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import msgspec
from pattern_tracker.core.store import Store
from pattern_tracker.model.events import TrackRequest
from pattern_tracker.sinks.lineage_store import LineageStore

from benchmarks._common import machine, serve, write_result

TARGET_MS = 100.0
_decode = msgspec.json.decode


def paths_for(files: int, rnd: random.Random) -> list[str]:
    repos = ["api-server", "web-client", "data-pipeline", "infra", "ml-models", "docs-site", "cli-tools"]
    dirs = ["src", "src/core", "src/util", "src/handlers", "tests", "tests/unit", "lib", "scripts", "pkg/internal",
            "components", "migrations"]
    exts = [".py", ".py", ".py", ".ts", ".tsx", ".go", ".rs", ".md", ".yaml", ".sql"]
    words = ["user", "order", "cache", "auth", "session", "report", "invoice", "queue", "worker", "config", "parser",
             "client", "schema", "metrics", "router", "store", "event", "payment", "search", "index"]
    out: set[str] = set()
    while len(out) < files:
        name = f"{rnd.choice(words)}_{rnd.choice(words)}{rnd.randrange(1000)}{rnd.choice(exts)}"
        out.add(f"/home/dev/{rnd.choice(repos)}/{rnd.choice(dirs)}/{name}")
    return sorted(out)


def build(data: Path, nodes: int, files: int, seed: int = 12) -> float:
    """The store serve will open (``data``): ``nodes`` nodes over ``files`` files. Returns seconds taken."""
    t0 = time.perf_counter()
    rnd = random.Random(seed)
    paths = paths_for(files, rnd)
    counts = [1] * files
    hot = rnd.sample(range(files), files)  # which files the heavy tail lands on
    for _ in range(nodes - files):  # 30% of the extra versions heavy-tailed, the rest anywhere
        if rnd.random() < 0.3:
            counts[hot[min(files - 1, int((rnd.paretovariate(1.2) - 1) * 50))]] += 1
        else:
            counts[rnd.randrange(files)] += 1
    order = [i for i, c in enumerate(counts) for _ in range(c)]
    rnd.shuffle(order)
    body = "def handler(event):\n    return {'status': 200, 'body': event.get('body', '')}\n" * 16
    made = [0] * files
    store = Store.open(data)
    try:
        lineage = LineageStore(store)
        batch: list[TrackRequest] = []
        for n, i in enumerate(order):
            made[i] += 1
            v = made[i]
            batch.append(TrackRequest(
                event_type="pattern_modified" if v > 1 else "pattern_created", pattern_id=f"f{i}-v{v}",
                pattern_version=str(v), pattern_name=paths[i].rsplit("/", 1)[1], file_path=paths[i],
                language="python", tool_name=rnd.choice(["Edit", "Write", "MultiEdit"]),
                parent_pattern_ids=[f"f{i}-v{v - 1}"] if v > 1 else [],
                pattern_data={"code": f"{body}# {v}\n", "session_id": f"session-{rnd.randrange(400)}",
                              "occurred_at": 1_760_000_000 + n}))
            if len(batch) == 2000:
                lineage.track_many(batch)
                batch = []
        if batch:
            lineage.track_many(batch)
        stats = lineage.stats()
    finally:
        store.close()
    assert stats["nodes"] == nodes, stats
    return time.perf_counter() - t0


def write_elsewhere(data: Path, path: str) -> None:
    """One new file tracked by this process (not serve) into the store serve reads: serve is not told."""
    store = Store.open(data)
    try:
        LineageStore(store).track(TrackRequest(event_type="pattern_created", pattern_id=f"elsewhere-{path}",
                                               file_path=path, pattern_data={"code": "y = 2\n"}))
    finally:
        store.close()


class Client:
    """One keep-alive HTTP/1.1 connection; ``get`` returns (ms from request to the body read, JSON)."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.conn = HTTPConnection(parsed.hostname, parsed.port, timeout=30)

    def files(self, **query: Any) -> tuple[float, dict[str, Any]]:
        path = "/standin/v1/files?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        t0 = time.perf_counter()
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        raw = resp.read()
        ms = (time.perf_counter() - t0) * 1000
        assert resp.status == 200, (resp.status, raw[:200])
        return ms, _decode(raw)["data"]

    def track(self, body: dict[str, Any]) -> None:
        self.conn.request("POST", "/api/pattern-traceability/lineage/track", body=msgspec.json.encode(body),
                          headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        assert resp.status == 200, resp.read()[:200]
        resp.read()


def timed(fn: Any, repeat: int) -> list[float]:
    return [fn()[0] for _ in range(repeat)]


def row(name: str, times: list[float], note: str = "") -> str:
    worst = max(times)
    ok = "yes" if worst < TARGET_MS else "**no**"
    return f"| {name} | {len(times)} | {statistics.median(times):.1f} | {worst:.1f} | {ok} | {note} |"


def main(nodes: int, files: int, limit: int, repeat: int) -> str:
    root = Path(tempfile.mkdtemp(prefix="pt-bench-ui-"))
    try:
        build_s = build(root / "data", nodes, files)
        print(f"store built: {nodes} nodes over {files} files in {build_s:.1f}s", flush=True)
        with serve(root / "data") as url:
            c = Client(url)
            c.files(limit=limit)  # the connection and the store's first read, untimed
            rows = [row("first page", timed(lambda: c.files(limit=limit), repeat))]
            walk: list[float] = []
            cursors: list[str | None] = [None]
            listed = 0
            while True:
                ms, page = c.files(limit=limit, after=cursors[-1])
                walk.append(ms)
                listed += len(page["files"])
                if page["next"] is None:
                    break
                cursors.append(page["next"])
            assert listed == files, (listed, files)
            rows.append(row(f"every page in turn, following `next` ({len(walk)} pages)", walk,
                            f"{listed:,} files listed"))
            middle, last = cursors[len(cursors) // 2], cursors[-1]
            rows.append(row(f"a middle page (page {len(cursors) // 2 + 1}, by its cursor)",
                            timed(lambda: c.files(limit=limit, after=middle), repeat)))
            rows.append(row(f"the last page (page {len(cursors)}, by its cursor)",
                            timed(lambda: c.files(limit=limit, after=last), repeat)))
            cold, _ = c.files(limit=limit, search="invoice")
            rows.append(row("the first search (serve builds its list of paths)", [cold]))
            for needle in ("invoice", "no-such-file-anywhere"):
                _, found = c.files(limit=limit, search=needle)
                label = f"search `{needle}` ({len(found['files'])}{'+' if found['next'] else ''} on its first page)"
                rows.append(row(label, timed(lambda needle=needle: c.files(limit=limit, search=needle), repeat),
                                "list of paths in memory"))
                after_write: list[float] = []
                for k in range(3):
                    c.track({"event_type": "pattern_created", "pattern_id": f"new-{needle}-{k}",
                             "pattern_data": {"code": "x = 1\n"}, "file_path": f"/home/dev/new/{needle}{k}.py"})
                    after_write.append(c.files(limit=limit, search=needle)[0])
                rows.append(row(f"search `{needle}`, first after a write through serve", after_write,
                                "the list takes the new file in"))
                after_other: list[float] = []
                for k in range(3):
                    write_elsewhere(root / "data", f"/home/dev/other/{needle}{k}.py")
                    after_other.append(c.files(limit=limit, search=needle)[0])
                rows.append(row(f"search `{needle}`, first after another process wrote", after_other,
                                "the list is rebuilt"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return "\n".join([
        (f"### Web UI file listing ({nodes:,} nodes over {files:,} files, {limit} files a page, "
        "`GET /standin/v1/files` from `serve` over HTTP)"),
        "",
        "| request | n | median ms | max ms | every one < 100 ms | |",
        "|---|---:|---:|---:|:---:|---|",
        *rows,
        "",
        (f"Time from sending the request to reading the whole body, one keep-alive connection, `serve` in its own "
        f"process on the embedded LMDB store (built in {build_s:.0f} s with `LineageStore.track_many`; versions per "
        f"file heavy-tailed, ~1.5 KB of code each). Machine: {machine()}."),
    ])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    table = main(a.nodes, a.files, a.limit, a.repeat)
    print(table)
    print(f"written to {write_result('ui_listing', table)}")
