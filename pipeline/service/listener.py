"""The stand-in's listening socket: closed and reopened for chaos outages, and its errors for users."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

from aiohttp import web

__all__ = ["ListenError", "SiteListener"]

log = logging.getLogger("pattern_tracker.service.serve")  # one logger for the stand-in, whichever module


class SiteListener:
    """Closes and reopens the listening socket of ``runner`` (``outage: refused``). Closing also
    drops the open connections (idle keep-alive ones and requests in progress), as when the
    service goes away. ``port`` is the bound port, so a server started on port 0 comes back on
    the same port."""

    def __init__(self, runner: web.BaseRunner, site: web.TCPSite | None, host: str, port: int) -> None:
        self.runner = runner
        self.site = site
        self.host = host
        self.port = port

    @property
    def listening(self) -> bool:
        return self.site is not None

    async def pause(self) -> None:
        site, self.site = self.site, None
        if site is not None:
            await site.stop()
        server = self.runner.server
        for conn in server.connections if server is not None else ():
            conn.force_close()  # the service is gone: its open connections (keep-alive ones too) with it

    async def resume(self) -> None:
        attempt = 0
        while self.site is None:
            site = web.TCPSite(self.runner, self.host, self.port)
            try:
                await site.start()
            except OSError as exc:
                attempt += 1
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("chaos: cannot listen on %s:%s again yet (%s); retrying", self.host, self.port, exc)
                await asyncio.sleep(0.25)
                continue
            self.site = site



class ListenError(OSError):
    """The listening socket could not be opened: a user's to fix (another port or host), not a crash.

    ``str()`` is one line naming the address, e.g. ``cannot listen on 127.0.0.1:8053: the port is
    already in use``; ``port_problem`` says whether another port (rather than another host) helps.
    """

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        if exc.errno == errno.EADDRINUSE:
            why, self.port_problem = "the port is already in use", True
        elif exc.errno == errno.EACCES:
            why, self.port_problem = "permission denied (ports below 1024 need privileges)", True
        elif isinstance(exc, socket.gaierror):
            why, self.port_problem = "the host name does not resolve", False
        elif exc.errno == errno.EADDRNOTAVAIL:
            why, self.port_problem = "the address is not one of this machine's", False
        else:
            why, self.port_problem = (exc.strerror or str(exc)).lower(), False
        shown = f"[{host}]" if ":" in host else host
        super().__init__(exc.errno, f"cannot listen on {shown}:{port}: {why}")
        self.host, self.port = host, port

    def __str__(self) -> str:
        return str(self.strerror)

