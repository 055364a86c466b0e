"""Shared fixtures: a real LMDB Store in tmp_path and the `serve` app on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
import os
from pathlib import Path
from typing import Any

import pytest

# Scenario helpers hold the assertions of the tests that call them: rewritten like a test
# module's, so a failure shows the values compared (registered before anything imports them).
pytest.register_assert_rewrite("tests.reliability_scenarios", "tests.spool_scenarios", "tests.clitools")

from aiohttp import web  # noqa: E402

from pattern_tracker.core.store import MIB, Store  # noqa: E402
from tests.clitools import ENV_DROP  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _no_user_config_file(tmp_path_factory) -> Iterator[None]:
    """In-process load_config() reads $XDG_CONFIG_HOME/pattern-tracker/config.yaml: never the
    developer's own file (subprocess tests get the same from clitools.cli_env)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    yield
    patch.undo()


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store.open(tmp_path / "store", map_size=64 * MIB)
    yield s
    s.close()


@pytest.fixture
def tracker_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data directory for the in-process facade (the environment clitools.cli_env gives
    a subprocess): no tracker setting of the developer's shell leaks in."""
    for key in list(os.environ):
        if key.startswith(ENV_DROP):
            monkeypatch.delenv(key)
    data = tmp_path / "data"
    monkeypatch.setenv("PATTERN_TRACKER_DATA_DIR", str(data))
    monkeypatch.setenv("XDG_CACHE_HOME", f"{data}-cache")
    return data


@pytest.fixture
def lineage_backend() -> str:
    """The store ``lineage`` builds: "lmdb", or "postgresql" where a module parametrises it
    (tests.lineage_backends.every_backend runs the serve contract tests on both)."""
    return "lmdb"


@pytest.fixture
def lineage(request: pytest.FixtureRequest, lineage_backend: str):
    """The lineage store serve_factory serves: the LMDB one over ``store``, or PostgreSQL on a fresh
    database (not started: the app starts and closes it)."""
    if lineage_backend == "postgresql":
        from pattern_tracker.sinks.lineage_pg import PostgresLineage

        return PostgresLineage(request.getfixturevalue("pg_url"), max_size=4)
    from pattern_tracker.sinks.lineage_store import LineageStore

    return LineageStore(request.getfixturevalue("store"))


@pytest.fixture
async def serve_factory(lineage) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await serve_factory(**build_app_kwargs)`` -> base URL of a running server (cleaned up after)."""
    from pattern_tracker.service.serve import build_app

    runners: list[web.AppRunner] = []

    async def start(**kwargs: Any) -> str:
        runner = web.AppRunner(build_app(lineage, **kwargs), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def serve_url(serve_factory) -> str:
    return await serve_factory()


from tests.browser import browser, page  # noqa: E402,F401 - the web pages' fixtures (real Chromium)
from tests.lineage_backends import stored  # noqa: F401 - the serve app's store, awaited whichever it is
from tests.pgserver import pg_server, pg_url  # noqa: F401 - a real PostgreSQL (session server, a database per test)
