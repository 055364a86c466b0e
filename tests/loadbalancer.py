"""A round-robin TCP load balancer on 127.0.0.1 for tests and benchmarks: replicas behind one URL.

Each client connection goes to the next backend in turn (the way an nginx ``upstream`` with
keep-alive spreads a client's pooled connections) and its bytes are piped both ways until either
side closes. A backend that refuses the connection is skipped for that connection (the next one
is tried), like a proxy's passive health check. Runs its own event loop on a thread, so
synchronous tests use it as a context manager::

    with balancer([url_a, url_b]) as lb:
        run_cli("replay", ..., env=cli_env(d, PATTERN_TRACKING_API_URL=lb.url))
        assert all(lb.connections)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

__all__ = ["LoadBalancer", "balancer"]


class LoadBalancer:
    """Round-robin per connection over ``backends`` (``http://host:port`` URLs)."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = [(urlsplit(u).hostname or "127.0.0.1", int(urlsplit(u).port or 80)) for u in backends]
        self.connections = [0] * len(self.backends)  # client connections each backend got
        self.url = ""
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loadbalancer", daemon=True)

    def start(self) -> str:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", 0), self._loop).result(10)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def close(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)
            finally:
                up_writer.close()
        except asyncio.CancelledError:
            pass  # closing: the connection ends with the balancer
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            index = self._next
            self._next = (self._next + 1) % len(self.backends)
            try:
                pair = await asyncio.open_connection(*self.backends[index])
            except OSError:
                continue  # that replica is down: the next one
            self.connections[index] += 1
            return pair
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close; a reset closes this direction (the other ends with its own EOF)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


@contextlib.contextmanager
def balancer(backends: list[str]) -> Iterator[LoadBalancer]:
    lb = LoadBalancer(backends)
    lb.start()
    try:
        yield lb
    finally:
        lb.close()
