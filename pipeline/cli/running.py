"""Running sources through the pipeline in the foreground, with a live status line on a terminal:
what ``run``, ``watch`` and ``archive record`` share."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pattern_tracker.cli.support import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    dropped_note,
    install_stop,
    stderr_line,
    summary_fields,
)

log = logging.getLogger("pattern_tracker.main")


class StatusLine:
    """A one-line live status on a terminal, refreshed every second (nothing when not a tty).

    While it runs, log records bound for stderr first clear the line: a log line would
    otherwise be glued to the end of the status text (the status has no newline).
    """

    def __init__(self, render: Callable[[], str], enabled: bool) -> None:
        self.render = render
        self.enabled = enabled
        self._width = 0
        self._lock = threading.Lock()  # log records come from the store thread too

    async def loop(self, stop: asyncio.Event) -> None:
        if not self.enabled:
            return
        from pattern_tracker.cli.progress import clear_before_logs

        undo = clear_before_logs(self.clear, sys.stderr)
        try:
            while not stop.is_set():
                self.show()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            undo()
            self.clear()

    def show(self) -> None:
        text = self.render()
        with self._lock:
            pad = max(0, self._width - len(text))
            sys.stderr.write("\r" + text + " " * pad)
            sys.stderr.flush()
            self._width = len(text)

    def clear(self) -> None:
        with self._lock:
            if self._width:
                sys.stderr.write("\r" + " " * self._width + "\r")
                sys.stderr.flush()
                self._width = 0


# ---------------------------------------------------------------------------------------
# Commands


async def run_sources(cfg: Any, kinds: Sequence[str], paths: Sequence[str], sink: Any = None,
                      as_json: bool = False, target: str | None = None) -> int:
    """Run ``kinds`` of sources until they end or a stop signal; the summary as one line on
    stderr, and with ``as_json`` as one JSON object on stdout too. ``target``: where ``sink``
    puts the events, for the status line (default: the service or the embedded store)."""
    from pattern_tracker.composition import build_pipeline, open_store, stdin_source, watch_source

    store = open_store(cfg)
    pipeline = build_pipeline(cfg, store, sink=sink)
    stop = asyncio.Event()
    install_stop(stop)
    sources = []
    stdin_stats = None
    status = StatusLine(lambda: "", enabled=sys.stderr.isatty())
    if "watch" in kinds:
        src, _ = watch_source(cfg, paths)
        sources.append(src)
    if "stdin" in kinds:
        src, stdin_stats = stdin_source(cfg, lambda line: (status.clear(), stderr_line(line)))
        sources.append(src)
    where = target or (f"{cfg.api.url}" if cfg.api.url else f"embedded store {cfg.storage.data_dir_path}")
    started = time.monotonic()

    def render() -> str:
        s = pipeline.summary
        rate = (s.delivered + s.already_existed) / max(1e-9, time.monotonic() - started)
        # Pending: what the spool still holds, i.e. read (by this run, the hook, an earlier run)
        # and not yet acknowledged — the number a user waits to see reach 0. A cheap LMDB read.
        return (
            f"pattern-tracker → {where} | read {s.read} | delivered {s.delivered} | dup {s.already_existed} "
            f"| pending {pipeline.spool.size()} | dead {s.dead_lettered} | {rate:.1f} ev/s"
        )

    status.render = render
    if "watch" in kinds:
        stderr_line(f"watching {', '.join(paths)} → {where} (Ctrl-C to stop)")
    status_task = asyncio.create_task(status.loop(stop))
    monitors = await start_monitoring(cfg, store, stop, lambda line: (status.clear(), stderr_line(line)))
    try:
        summary = await pipeline.run(sources, stop)
    finally:
        stop.set()
        await status_task
        await stop_monitoring(monitors)
    stderr_line(
        f"done: read {summary.read}, unchanged {summary.unchanged}, delivered {summary.delivered}, "
        f"already there {summary.already_existed}, dead-lettered {summary.dead_lettered}, "
        f"left in spool {summary.left_in_spool}{dropped_note(summary, cfg.pattern_tracking.overflow_policy)} "
        f"({summary.seconds:.1f}s)"
    )
    if as_json:
        import json

        print(json.dumps({**summary_fields(summary), "rejected": stdin_stats.rejected if stdin_stats is not None else 0}),
              flush=True)
    if summary.not_kept:
        stderr_line(f"pattern-tracker: {summary.not_kept} event(s) were neither delivered nor kept "
                    f"({summary.not_kept_because}); free space or raise storage.max_map_size_mb")
        return EXIT_FAILURE
    if summary.stopped_waiting_for_room:
        # overflow_policy block, the spool full: what was read is in the spool; the input not taken
        # is left where it was (stdin: unread; watch: the next start's scan finds the files).
        stderr_line(f"stopped while waiting for room in the full spool ({summary.left_in_spool} events, "
                "overflow_policy block): input not taken was left unread")
        return EXIT_INTERRUPTED
    if stdin_stats is not None and stdin_stats.rejected:
        stderr_line(f"{stdin_stats.rejected} input record(s) rejected (see the lines above)")
        return EXIT_REJECTED
    return EXIT_OK


async def start_monitoring(cfg: Any, store: Any, stop: asyncio.Event, console: Callable[[str], None]) -> list[Any]:
    """The status server and the alerter of ``monitoring`` (docs/operations.md). They never make
    ``run`` fail: a part that cannot start is logged and skipped."""
    mon = cfg.monitoring
    started: list[Any] = []
    if not mon.enabled:
        return started
    if mon.status_port:
        try:
            from pattern_tracker.web.status_server import StatusServer

            server = StatusServer(cfg, store, mon.status_port)
            url = await server.start()
            log.info("status endpoint on %s (/health, /metrics.json, the dashboard at /ui/)", url)
            started.append(server)
        except Exception as exc:  # noqa: BLE001
            log.warning("status endpoint on port %s not started: %s: %s", mon.status_port, type(exc).__name__, exc)
    try:
        from pattern_tracker.usecases.alerting import Alerter

        started.append(asyncio.create_task(Alerter(cfg, store, console=console).run(stop)))
    except Exception as exc:  # noqa: BLE001
        log.warning("alerting not started: %s: %s", type(exc).__name__, exc)
    return started


async def stop_monitoring(started: list[Any]) -> None:
    for part in started:
        try:
            if isinstance(part, asyncio.Task):
                await asyncio.wait_for(part, timeout=10)
            else:
                await part.stop()
        except Exception as exc:  # noqa: BLE001
            log.warning("stopping monitoring: %s: %s", type(exc).__name__, exc)
