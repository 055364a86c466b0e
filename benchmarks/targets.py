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

# "The hook does not regress" is judged by an A/B of two installs, interleaved under the same load
# (benchmarks.compare_installs: `PT_BENCH_BEFORE=OLD/bin/pattern-tracker make bench`): after / before
# at most these (its runs of one install spread a few per cent on the shared 2-core machine).
HOOK_TOLERANCE = {"hook_median_ms": 1.05, "hook_p99_ms": 1.10}

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


def _serve_ingest(r: dict[str, Any] | None, ingest: dict[str, Any] | None, since: str | None) -> list[Row]:
    """Target 3: benchmarks.serve_ingest's A/B (``PT_BENCH_BEFORE``: an install in the layout before)
    and its big / empty ratio; the per-event client ratio from replay_throughput."""
    two_x = "3. `serve` ingest: ≥ 2× today's events/s into the embedded store, batches of 100 (A/B of two installs)"
    big = "3. `serve` ingest at 1M stored nodes ≥ 0.8× the rate into an empty store"
    rows: list[Row] = []
    if ingest is None:
        rows += [(two_x, "not measured (benchmark not run)", "–", None), (big, "not measured (benchmark not run)", "–", None)]
    else:
        here, after, big_after = _stamp(ingest, since), ingest["after_empty"], ingest["after_big"]
        before = ingest.get("before_empty")
        if before is None:
            rows.append((two_x, "no A/B in the results (set PT_BENCH_BEFORE)" + here, "–", None))
        else:
            gain = after["events_per_second"] / before["events_per_second"]
            rows.append((two_x, f"{gain:.2f}× ({after['events_per_second']:,.0f} events/s){here}",
                         f"before (layout {ingest['layouts']['before']}): {before['events_per_second']:,.0f} events/s",
                         gain >= 2.0))
        ratio = big_after["events_per_second"] / after["events_per_second"]
        rows.append((big.replace("1M", f"{big_after['nodes_before']:,}"),
                     f"{ratio:.2f}× ({big_after['events_per_second']:,.0f} events/s){here}",
                     f"empty store: {after['events_per_second']:,.0f} events/s", ratio >= 0.8))
    if r is not None:
        fp = r["ratios"]["full_over_per_event"]
        rows.append((f"3. per-event client ratio, like for like ({r['full_k']['events']:,} events each into an empty "
                     "store) ≥ 20×", f"{fp:.1f}× ({r['full_k']['events_per_second']:,.0f} events/s)",
                     f"per-event client: {r['per_event']['events_per_second']:,.0f} events/s", fp >= 20))
    return rows


def _memory(r: dict[str, Any]) -> list[Row]:
    mb = r["rss"]["maxrss_kb"] * 1024 / 1e6
    return [(f"4. peak RSS replaying {r['rss_events']:,} events ≤ 150 MB (VmHWM)", f"{mb:,.0f} MB", "150 MB",
             mb <= 150 if r["rss_events"] >= 1_000_000 else None)]


def _hook(hook: dict[str, Any] | None, ab: dict[str, Any] | None, since: str | None) -> list[Row]:
    rows: list[Row] = []
    for key, what in (("hook_median_ms", "median"), ("hook_p99_ms", "p99")):
        name = f"4. the hook's {what} does not regress (A/B of two installs, interleaved: `compare_installs`)"
        here = ""
        if hook is not None:
            figs = hook["median_ms" if what == "median" else "p99_ms"]
            here = (f"; this run{_stamp(hook, since)}: {figs['run']:.1f} ms, bare interpreter "
                    f"{figs['bare']:.1f} ms")
        if ab is None:
            rows.append((name, "no A/B in the results (set PT_BENCH_BEFORE)" + here, "–", None))
            continue
        ratio = ab["after"][key] / ab["before"][key]
        rows.append((name, f"{ab['after'][key]:.1f} ms = {ratio:.2f}× before ({ab['date']}, {ab['hooks']} runs "
                     f"each){_stamp(ab, since)}{here}", f"the earlier install: {ab['before'][key]:.1f} ms",
                     ratio <= HOOK_TOLERANCE[key]))
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
    out.extend(_serve_ingest(replay, _load("serve_ingest"), since))
    add(replay, lambda: _memory(replay), ["4. peak RSS replaying 1,000,000 events ≤ 150 MB"])  # type: ignore[arg-type]
    out.extend(_hook(hook, _load("compare_installs"), since))
    return out


def table(since: str | None = None) -> str:
    lines = ["### Issue 14: the pipeline near the cost of decoding", "",
             "| target | measured | compared to | |", "|---|---:|---|---|"]
    lines += [f"| {name} | {measured} | {ref} | {_ok(met)} |" for name, measured, ref, met in rows(since)]
    lines += ["", "Each ratio is measured in one run, side by side (the machine is shared): the pipeline's rates "
              "beside reading + decoding alone and the hand-written client (benchmarks.replay_throughput), telemetry "
              "on beside off (benchmarks.telemetry_overhead), the hook of this install beside an earlier one's "
              "(benchmarks.compare_installs; the hook's own figures of this run: benchmarks.hook_latency)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
