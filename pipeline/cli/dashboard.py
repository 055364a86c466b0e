"""``pattern-tracker dashboard``: the operations dashboard over the data directory alone.

    dashboard [--port N] [--host ADDR]

Serves what a running ``run``/``watch`` serves on its status port (the page at ``/ui/``,
``/health``, ``/metrics.json``) with no pipeline running: a user can watch the spool, the
circuit and the counters while only the hooks (and the drainers they start) work. It reads the
store and probes the service through the configured sink, as ``health`` does; it delivers
nothing and changes nothing. Its start line (the URL) is on stderr, as ``serve``'s and ``run``'s
are: stdout carries a command's results only. Exit codes: 0 stopped by Ctrl-C / SIGTERM, 2 the
port cannot be used (one line), 1 the store cannot be opened.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from pattern_tracker.cli.support import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    install_stop,
    open_store_for,
    stderr_line,
)

DEFAULT_PORT = 8054  # when monitoring.status_port is 0 (off); next to serve's 8053
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``dashboard`` to the ``pattern-tracker`` subparsers."""
    help_ = "serve the operations dashboard over the data directory (no pipeline needed)"
    p = sub.add_parser(
        "dashboard", parents=[common], help=help_,
        description=help_ + ". Read-only; Ctrl-C stops it. The page is at http://HOST:PORT/ui/.",
    )
    p.add_argument("--port", type=int, default=None,
                   help=f"port (default monitoring.status_port, or {DEFAULT_PORT} when that is 0; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="bind address (default 127.0.0.1; the page has no authentication)")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    cfg, store = open_store_for(args)
    port = args.port if args.port is not None else (cfg.monitoring.status_port or DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise CliError(f"--port {port} is out of range 0..65535", EXIT_USAGE)
    return asyncio.run(_serve(cfg, store, args.host, port, ours=args.port is None and bool(cfg.monitoring.status_port)))


async def _serve(cfg: Any, store: Any, host: str, port: int, ours: bool) -> int:
    from pattern_tracker.service.listener import ListenError
    from pattern_tracker.web.status_server import StatusServer

    stop = asyncio.Event()
    install_stop(stop)
    server = StatusServer(cfg, store, port, host=host)
    try:
        url = await server.start()
    except ListenError as exc:
        if ours and exc.port_problem:
            hint = "a running `run`/`watch` may already serve the dashboard there; or choose another with --port N"
        elif exc.port_problem:
            hint = "choose another with --port N (--port 0 picks a free one)"
        else:
            hint = "check --host"
        await server.stop()
        raise CliError(f"{exc}; {hint}", EXIT_USAGE) from None
    try:
        stderr_line(f"dashboard on {url}/ui/ (Ctrl-C to stop)")
        if host not in LOOPBACK:
            stderr_line(f"note: listening on {host}: the dashboard has no authentication")
        await stop.wait()
    finally:
        await server.stop()
    return EXIT_OK
