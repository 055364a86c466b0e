"""PNG plots of the benchmark results, written next to the markdown in benchmarks/results/.

    python -m benchmarks.plot          # every plot whose results JSON exists

Needs matplotlib (`pip install -e '.[bench]'`; `make bench` installs it). Without it, says so and
does nothing: the markdown tables are the results, the plots are a view of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot: matplotlib is not installed; skipping the PNG plots (pip install -e '.[bench]')")
        return None
    return plt


def _label_bars(ax: Any, bars: Any, fmt: str = "{:,.0f}") -> None:
    for b in bars:
        h = b.get_height()
        if h:
            ax.annotate(fmt.format(h), (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")


def plot_replay(r: dict[str, Any], out: Path) -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    names = ["(full) replay\n→ serve", "(a) ceiling\nasyncio loop", "(b) per-event\nclient", "(c) replay\n--sink null"]
    rates = [r["full"]["events_per_second"], r["ceiling"]["events_per_second"], r["per_event"]["events_per_second"],
             r["null"]["events_per_second"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    bars = ax1.bar(names, rates, color=["#1f77b4", "#7f7f7f", "#d62728", "#2ca02c"])
    ax1.set_yscale("log")
    ax1.set_ylabel("events/s (log scale)")
    ax1.axhline(200_000, color="#2ca02c", linestyle=":", linewidth=1)
    ax1.annotate("null-sink target 200,000/s", (3.4, 200_000), ha="right", va="bottom", fontsize=8, color="#2ca02c")
    _label_bars(ax1, bars)
    ax1.set_title(f"Replay throughput, {r['events']:,} events "
                  f"(per-event client: first {r['per_event_events']:,})", fontsize=10)

    lat_names = ["(full)\nper request", "(a) ceiling\nper request", "(b) per-event\nper event"]
    p50 = [r["full"]["latency_p50_ms"] or 0, r["ceiling"]["latency_p50_ms"], r["per_event"]["latency_p50_ms"]]
    p99 = [r["full"]["latency_p99_ms"] or 0, r["ceiling"]["latency_p99_ms"], r["per_event"]["latency_p99_ms"]]
    x = range(len(lat_names))
    b1 = ax2.bar([i - 0.2 for i in x], p50, width=0.4, label="p50")
    b2 = ax2.bar([i + 0.2 for i in x], p99, width=0.4, label="p99")
    ax2.set_xticks(list(x), lat_names)
    ax2.set_ylabel("ms")
    ax2.set_title("Request latency ((full): histogram bucket bounds)", fontsize=10)
    ax2.legend()
    _label_bars(ax2, b1, "{:,.1f}")
    _label_bars(ax2, b2, "{:,.1f}")
    fig.suptitle(f"{r['date']} · {r['machine']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_outage(r: dict[str, Any], out: Path) -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    t = [p[0] for p in r["timeline"]]
    delivered = [p[1] for p in r["timeline"]]
    spool = [p[2] for p in r["timeline"]]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    ax.plot(t, delivered, label="events stored by serve", color="#1f77b4")
    ax.plot(t, spool, label="replay's spool (undelivered backlog)", color="#d62728")
    ax.axvspan(r["outage_start"], r["service_back"], color="#cccccc", alpha=0.6, label="serve stopped (refused)")
    if r.get("drained_at") is not None:
        ax.axvline(r["drained_at"], color="#2ca02c", linestyle="--",
                   label=f"all delivered: {r['drain_seconds']:.1f}s after recovery")
    ax.axhline(r["events"], color="#7f7f7f", linestyle=":", linewidth=1)
    ax.set_xlabel("seconds since replay start")
    ax.set_ylabel("events")
    ax.set_title(f"Outage recovery: {r['events']:,} events, {r['outage']:g}s outage, lost {r['lost']}", fontsize=10)
    ax.legend(loc="center right", fontsize=8)
    fig.suptitle(f"{r['date']} · {r['machine']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


PLOTS = {"replay_throughput": plot_replay, "outage_recovery": plot_outage}


def plot_all() -> list[Path]:
    written = []
    for name, fn in PLOTS.items():
        src = RESULTS / f"{name}.json"
        if not src.exists():
            continue
        path = fn(json.loads(src.read_text()), RESULTS / f"{name}.png")
        if path is None:
            return written
        print(f"plot written to {path}")
        written.append(path)
    return written


if __name__ == "__main__":
    plot_all()
