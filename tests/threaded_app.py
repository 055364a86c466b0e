"""An aiohttp app served on 127.0.0.1 (an ephemeral port) from a thread of its own: for tests whose
own thread runs a CLI subprocess or blocks while the service answers."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ThreadedApp:
    """Subclasses build their app in ``make_app``; ``url`` is set once it listens (``with`` starts it)."""

    def __init__(self) -> None:
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def make_app(self) -> web.Application:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self.runner = web.AppRunner(self.make_app())
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", 0).start()
            host, port = self.runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
