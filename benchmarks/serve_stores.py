"""serve's lineage stores side by side: events/s into `serve` on the embedded LMDB store, on
PostgreSQL with one replica, and on PostgreSQL with two replicas over one database.

    python -m benchmarks.serve_stores [--events N] [--rounds R] [--files F]

Each variant is `pattern-tracker replay ARCHIVE --json` (the tracker's whole pipeline, default
batch size and concurrency) into `serve` processes behind the tests' round-robin balancer
(tests/loadbalancer.py: one backend, or two), so the proxy hop is in every figure alike. Each
measurement gets a fresh data directory or a fresh database; the variants run interleaved
(the order rotates every round) and the figure is the mean over the rounds.

PostgreSQL is a private server started for the run (tests/pgserver.py's PgServer, on this
machine's disk) with durability ON (fsync, synchronous_commit, full_page_writes): the embedded
store syncs every commit too, and the test server's speed settings would flatter PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks._common import BIN, RESULTS, machine, serve, write_result
from benchmarks.replay_throughput import archive_for, child_env, pipeline_settings, run_child, warm

VARIANTS = ("lmdb", "pg1", "pg2")
LABELS = {"lmdb": "embedded LMDB store, 1 serve", "pg1": "PostgreSQL, 1 replica", "pg2": "PostgreSQL, 2 replicas"}
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def _pg_server() -> Any:
    import tests.pgserver as pgserver

    bindir = pgserver.find_bindir()
    if bindir is None:
        raise SystemExit(pgserver.INSTALL_HINT)
    pgserver._SETTINGS.update(DURABLE)  # noqa: SLF001 - the tests' server, made durable for a fair figure
    server = pgserver.PgServer(bindir)
    server.init()
    return server


def one(variant: str, arch: Path, events: int, root: Path, pg: Any, tag: str) -> dict[str, Any]:
    from tests.loadbalancer import balancer

    print(f"-- {LABELS[variant]} ({tag})", flush=True)
    with ExitStack() as stack:
        if variant == "lmdb":
            backends = [stack.enter_context(serve(root / f"svc-{variant}-{tag}"))]
        else:
            url = pg.url(pg.create_database())
            env = {**child_env(root / "unused"), "PATTERN_TRACKER_SERVE_STORE": url}
            backends = [stack.enter_context(serve(root / f"svc-{variant}-{tag}-{i}", env=env))
                        for i in range(1 if variant == "pg1" else 2)]
        lb = stack.enter_context(balancer(backends))
        c = run_child([str(BIN), "replay", str(arch), "--json"], child_env(root / f"replay-{variant}-{tag}", lb.url))
        connections = list(lb.connections)
    out = c.json()
    assert out["delivered"] + out["already_existed"] == events and out["left_in_spool"] == 0, out
    return {"events_per_second": out["events_per_second"], "seconds": out["seconds"], "wall": c.wall,
            "connections": connections, "retries": out.get("retried")}


def main(events: int, rounds: int, files: int, seed: int) -> tuple[str, dict[str, Any]]:
    batch_size, concurrency = pipeline_settings()
    arch = archive_for(events, files, seed)
    warm(arch)
    root = Path(tempfile.mkdtemp(prefix="pt-bench-stores-"))
    print("-- starting PostgreSQL (durable)", flush=True)
    pg = _pg_server()
    with pg.admin() as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    try:
        for i in range(rounds):
            order = VARIANTS[i % 3:] + VARIANTS[:i % 3]  # lmdb pg1 pg2, pg1 pg2 lmdb, pg2 lmdb pg1, …
            for variant in order:
                runs[variant].append(one(variant, arch, events, root, pg, f"round {i + 1}"))
    finally:
        pg.close()
        shutil.rmtree(root, ignore_errors=True)
    r: dict[str, Any] = {"events": events, "rounds": rounds, "files": files, "batch_size": batch_size,
                         "concurrency": concurrency, "machine": machine(), "postgres": version,
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for variant, results in runs.items():
        rates = [x["events_per_second"] for x in results]
        r[variant] = {"events_per_second": sum(rates) / len(rates), "rounds": rates,
                      "connections": [x["connections"] for x in results]}
    return table(r), r


def table(r: dict[str, Any]) -> str:
    lmdb, pg1, pg2 = r["lmdb"]["events_per_second"], r["pg1"]["events_per_second"], r["pg2"]["events_per_second"]

    def row(v: str) -> str:
        x = r[v]
        each = ", ".join(f"{e:,.0f}" for e in x["rounds"])
        split = " / ".join("+".join(str(n) for n in c) for c in x["connections"])
        return f"| {LABELS[v]} | {x['events_per_second']:,.0f} | {each} | {split} |"

    return "\n".join([
        f"### serve's stores ({r['events']:,} archived events over {r['files']} files, `pattern-tracker replay` "
        f"with batch {r['batch_size']} and {r['concurrency']} concurrent requests, through the tests' round-robin "
        f"balancer; {r['rounds']} interleaved rounds; PostgreSQL {r.get('postgres', '')} durable, on the same machine)",
        "",
        "| store | events/s (mean) | rounds | connections per replica, each round |",
        "|---|---:|---|---|",
        row("lmdb"), row("pg1"), row("pg2"),
        "",
        f"PostgreSQL 1 replica / LMDB: {pg1 / lmdb:.2f}×; 2 replicas / 1 replica: {pg2 / pg1:.2f}×. "
        "Every process (replay, the balancer, the serve replicas, PostgreSQL) shares this machine's cores: "
        "a second replica adds a process, not a machine.",
    ])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    text, results = main(a.events, a.rounds, a.files, a.seed)
    print(text)
    print(f"written to {write_result('serve_stores', text)}")
    (RESULTS / "serve_stores.json").write_text(json.dumps(results, indent=2) + "\n")
