"""Running the serve contract tests on both lineage stores: the embedded LMDB one and PostgreSQL.

conftest's ``lineage`` fixture builds the store ``lineage_backend`` names ("lmdb" unless a module
says otherwise); ``serve_factory`` / ``serve_url`` serve it. A contract test module runs every
test on both stores by importing :func:`every_backend` (it overrides ``lineage_backend`` with a
parametrised one); a test that pokes the LMDB store object itself is marked :data:`lmdb_only`.
PostgreSQL gets a fresh database per test on the session's server (tests.pgserver).

``stored`` reads the store a test's server wrote to, awaited whichever store it is:
``await stored.count()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

__all__ = ["BACKENDS", "StoreView", "every_backend", "lmdb_only", "stored"]

BACKENDS = ["lmdb", "postgresql"]

# A test that reaches into the embedded store (monkeypatches its methods, raises lmdb errors, ...).
lmdb_only = pytest.mark.parametrize("lineage_backend", ["lmdb"])


@pytest.fixture(params=BACKENDS, name="lineage_backend")
def every_backend(request: pytest.FixtureRequest) -> str:
    """Import into a test module to run its serve tests on both stores."""
    return str(request.param)


class StoreView:
    """The blocking LMDB store or the awaited PostgreSQL one, awaited alike."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.backend, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call


@pytest.fixture
def stored(lineage: Any) -> StoreView:
    return StoreView(lineage)
