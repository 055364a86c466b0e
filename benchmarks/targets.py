"""Issue 14's targets, each beside its measured figure and the figure it is compared to, from the
results the benchmarks of one `make bench` run wrote (benchmarks/results/*.json).

    python -m benchmarks.targets            # print the table from the latest results

`benchmarks.run_all` writes it to benchmarks/results/targets.md, puts it on top of SUMMARY.md and
into docs/benchmarks.md (`benchmarks.docs_page`). A row whose results are missing says so; a row
from a result older than the run says when it was measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from benchmarks._common import RESULTS

# The hook's figures before issue 14's work (the last full `make bench` before it, 2026-11-29 19:39
# UTC, 200 runs each, `run` holding the lease): absolute milliseconds follow the machine's load, so
# "does not regress" compares the hook to the bare interpreter of the same run, as then.
HOOK_BEFORE = {"median_over_bare": 58.7 / 22.3, "p99_over_bare": 107.9 / 53.9}
# How much worse than before a ratio to the bare interpreter may be and still count as no regression
# (the runs of one install spread more than this on the shared 2-core machine).
HOOK_TOLERANCE = 1.10

Row = tuple[str, str, str, bool | None]


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ok(met: bool | None) -> str:
    return "–" if met is None else "**met**" if met else "**not met**"


def _overhead(r: dict[str, Any]) -> list[Row]:
    null, dec, nd = r["null"], r["decode"], r["ratios"].get("null_over_decode")
    name = (f"1. pipeline overhead: `replay --sink null` ≥ 0.55× the rate of reading + decoding the archive alone "
            f"({r['events']:,} events, mean of {r.get('rounds', 1)} ABBA rounds)")
    if nd is None:
        return [(name, "not measured (a result from before this figure existed)", "–", None)]
    return [(name, f"{nd:.2f}× ({null['events_per_second']:,.0f} events/s)",
             f"read + decode alone: {dec['events_per_second']:,.0f} events/s", nd >= 0.55)]


def _client(r: dict[str, Any]) -> list[Row]:
    cc = r["ratios"].get("client_cpu_ratio")
    name = ("2. client efficiency: replay → serve, the replay process's CPU seconds (user + sys) per 10k delivered "
            "events ≤ 1.3× the hand-written client's (same batch bodies, one session)")
    if cc is None:
        return [(name, "not measured (a result from before this figure existed)", "–", None)]
    full, ceil = r["full"], r["ceiling"]
    return [(name, f"{cc:.2f}× ({full['cpu_per_10k']:.3f} s)", f"hand-written client: {ceil['cpu_per_10k']:.3f} s",
             cc <= 1.3)]


def _serve_ingest(r: dict[str, Any] | None) -> list[Row]:
    later = "not measured here yet (serve's ingest work has not landed)"
    rows: list[Row] = [
        ("3. `serve` ingest: ≥ 2× today's events/s into the embedded store, batches of 100", later, "–", None),
        ("3. `serve` ingest at 1M stored nodes ≥ 0.8× the rate into an empty store", later, "–", None),
    ]
    if r is not None:
        fp = r["ratios"]["full_over_per_event"]
        rows.append((f"3. per-event client ratio, like for like ({r['full_k']['events']:,} events each into an empty "
                     "store) ≥ 20×", f"{fp:.1f}× ({r['full_k']['events_per_second']:,.0f} events/s)",
                     f"per-event client: {r['per_event']['events_per_second']:,.0f} events/s", fp >= 20))
    return rows


def _memory(r: dict[str, Any] | None, hook: dict[str, Any] | None) -> list[Row]:
    rows: list[Row] = []
    if r is not None:
        mb = r["rss"]["maxrss_kb"] * 1024 / 1e6
        rows.append((f"4. peak RSS replaying {r['rss_events']:,} events ≤ 150 MB (VmHWM)", f"{mb:,.0f} MB",
                     "150 MB", mb <= 150 if r["rss_events"] >= 1_000_000 else None))
    if hook is not None:
        med, p99 = hook["median_ms"], hook["p99_ms"]
        m_ratio, p_ratio = med["run"] / med["bare"], p99["run"] / p99["bare"]
        rows.append(("4. the hook's median does not regress (`run` holds the lease; over the bare interpreter of "
                     "the same run)", f"{med['run']:.1f} ms = {m_ratio:.2f}× bare ({med['bare']:.1f} ms)",
                     f"before: {HOOK_BEFORE['median_over_bare']:.2f}× bare",
                     m_ratio <= HOOK_BEFORE["median_over_bare"] * HOOK_TOLERANCE))
        rows.append(("4. the hook's p99 does not regress (same)", f"{p99['run']:.1f} ms = {p_ratio:.2f}× bare "
                     f"({p99['bare']:.1f} ms)", f"before: {HOOK_BEFORE['p99_over_bare']:.2f}× bare",
                     p_ratio <= HOOK_BEFORE["p99_over_bare"] * HOOK_TOLERANCE))
    return rows


def _telemetry(t: dict[str, Any]) -> list[Row]:
    null = t["ratio_on_off"]["null"]
    return [("1. telemetry keeps its ≥ 0.8 on/off ratio (null sink, the worst case)", f"{null:.2f}",
             "the same pipeline with telemetry off", null >= 0.8)]


def _stamp(data: dict[str, Any] | None, since: str | None) -> str:
    if data is None or since is None or data.get("date", "") >= since:
        return ""
    return f" (from an earlier run: {data.get('date', 'undated')})"


def rows(since: str | None = None) -> list[Row]:
    """Every target's row; ``since``: the run's start (results older than it are marked)."""
    replay, hook, tel = _load("replay_throughput"), _load("hook_latency"), _load("telemetry_overhead")
    missing = "not measured (benchmark not run)"
    out: list[Row] = []

    def add(data: dict[str, Any] | None, build: Callable[[], list[Row]], names: list[str]) -> None:
        if data is None:
            out.extend((name, missing, "–", None) for name in names)
            return
        stamp = _stamp(data, since)
        out.extend((name, measured + stamp, ref, met) for name, measured, ref, met in build())

    add(replay, lambda: _overhead(replay), ["1. pipeline overhead"])  # type: ignore[arg-type]
    add(tel, lambda: _telemetry(tel), ["1. telemetry keeps its ≥ 0.8 on/off ratio"])  # type: ignore[arg-type]
    add(replay, lambda: _client(replay), ["2. client efficiency"])  # type: ignore[arg-type]
    out.extend(_serve_ingest(replay))
    add(replay, lambda: _memory(replay, None), ["4. peak RSS replaying 1,000,000 events ≤ 150 MB"])
    add(hook, lambda: _memory(None, hook), ["4. the hook's median and p99 do not regress"])
    return out


def table(since: str | None = None) -> str:
    lines = ["### Issue 14: the pipeline near the cost of decoding", "",
             "| target | measured | compared to | |", "|---|---:|---|---|"]
    lines += [f"| {name} | {measured} | {ref} | {_ok(met)} |" for name, measured, ref, met in rows(since)]
    lines += ["", "Each ratio is measured in one run, side by side (the machine is shared): the pipeline's rates "
              "beside reading + decoding alone and the hand-written client (benchmarks.replay_throughput), telemetry "
              "on beside off (benchmarks.telemetry_overhead), the hook beside the bare interpreter "
              "(benchmarks.hook_latency)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
