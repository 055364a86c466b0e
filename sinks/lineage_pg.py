"""The PostgreSQL lineage store: ``serve`` over one database, as many replicas as you like.

:class:`PostgresLineage` implements
:class:`~pattern_tracker.sinks.lineage_contract.AsyncLineageBackend` with psycopg 3 and a
connection pool, with the embedded store's semantics (the same rule functions, the same node
ids), so the same contract tests pass on both. The parts:

* :mod:`~pattern_tracker.sinks.lineage_pg_schema` — tables, indexes, migrations (advisory lock);
* :mod:`~pattern_tracker.sinks.lineage_pg_write` — a batch in one transaction; copying nodes in;
* :mod:`~pattern_tracker.sinks.lineage_pg_walks` — ancestry (recursive SQL), descendants, queries;
* :mod:`~pattern_tracker.sinks.lineage_pg_url` — the URL without its password, for every message.

Faults: a database that is down, restarting, shutting down or too slow, or no pooled connection
in time, raises :class:`~pattern_tracker.sinks.lineage_contract.LineageUnavailable` (serve answers
503 with Retry-After) within the configured timeouts; the pool checks a connection before
lending it and replaces broken ones, so the store recovers by itself once the database is back.
A transaction cut off midway is rolled back by PostgreSQL: nothing half-written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from pattern_tracker.model.events import TrackRequest
from pattern_tracker.settings.store_url import mask_store_url
from pattern_tracker.sinks import lineage_pg_walks as walks
from pattern_tracker.sinks.lineage_contract import (
    FilesPage,
    LineageUnavailable,
    LineageValidationError,
    TrackResult,
)
from pattern_tracker.sinks.lineage_layout import Node
from pattern_tracker.sinks.lineage_pg_schema import SchemaTooNew, migrate
from pattern_tracker.sinks.lineage_pg_url import redact_text
from pattern_tracker.sinks.lineage_pg_write import import_nodes, track_batch
from pattern_tracker.sinks.lineage_rules import batch_problem, static_check

__all__ = ["COMPONENT", "PostgresLineage"]

COMPONENT = "postgresql"

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

log = logging.getLogger("pattern_tracker.sinks.lineage_pg")

# What "the database cannot answer now" looks like from psycopg: connection refused or lost,
# admin shutdown, the server starting or restarting (all OperationalError), a closed connection
# (InterfaceError), no pooled connection in time (PoolTimeout), statement_timeout (QueryCanceled).
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed)


class PostgresLineage:
    """Lineage nodes and edges in PostgreSQL (an :class:`AsyncLineageBackend`).

    ``url`` is a libpq URL or connection string: sslmode and every other libpq option in it are
    honoured. ``min_size`` / ``max_size``: pooled connections per process. ``connect_timeout``:
    seconds to reach the database (``start`` retries for that long). ``statement_timeout``:
    seconds a statement may run on the server. ``pool_timeout``: seconds a request waits for a
    pooled connection (default ``connect_timeout``). ``retry_after``: the 503's Retry-After.
    """

    name = COMPONENT

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, connect_timeout: float = 5.0,
                 statement_timeout: float = 10.0, pool_timeout: float | None = None, retry_after: int = 2) -> None:
        self.shown_url = mask_store_url(url)  # the only form of the URL kept in the open: no password
        self.min_size = max(0, min_size)
        self.max_size = max(1, max_size, self.min_size)
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.pool_timeout = connect_timeout if pool_timeout is None else pool_timeout
        self.retry_after = retry_after
        self._conninfo, self._secrets = _conninfo(url, connect_timeout, statement_timeout)
        self._pool: AsyncConnectionPool[Any] | None = None
        # A call never takes longer than this, even when the server stops answering mid-statement.
        self._op_timeout = self.pool_timeout + statement_timeout + connect_timeout + 1.0

    def __repr__(self) -> str:
        return f"PostgresLineage({self.shown_url!r})"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying until ``connect_timeout``), create or upgrade the schema, open the pool.
        Raises :class:`LineageUnavailable` when the database cannot be reached or used in time."""
        if self._pool is not None:
            return
        deadline = time.monotonic() + self.connect_timeout
        conn = await self._first_connection(deadline)
        try:
            applied = await asyncio.wait_for(migrate(conn), self._op_timeout)
        except SchemaTooNew as exc:
            raise LineageUnavailable(COMPONENT, str(exc), self.retry_after) from None
        except (*_UNAVAILABLE, TimeoutError) as exc:
            raise self._unavailable(exc) from None
        finally:
            await conn.close()
        if applied:
            log.info("lineage schema at %s migrated to version %s", self.shown_url, applied[-1])
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._conninfo, min_size=self.min_size, max_size=self.max_size, open=False, timeout=self.pool_timeout,
            check=AsyncConnectionPool.check_connection, reconnect_timeout=max(1.0, self.pool_timeout),
            name="lineage", kwargs={"autocommit": True},
        )
        try:
            await pool.open(wait=self.min_size > 0,
                            timeout=max(0.5, deadline - time.monotonic()) + self.connect_timeout)
        except _UNAVAILABLE as exc:
            await pool.close()
            raise self._unavailable(exc) from None
        self._pool = pool

    async def _first_connection(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        """An autocommit connection, retried (backing off) until ``deadline``: a database still starting
        answers "the database system is starting up", a replica may start before its database."""
        delay = 0.05
        while True:
            try:
                return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except psycopg.OperationalError as exc:
                left = deadline - time.monotonic()
                if left <= 0 or _refused_for_good(exc):
                    raise self._unavailable(exc) from None
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- the contract ---------------------------------------------------------------------------

    def validate_batch(self, reqs: Sequence[TrackRequest]) -> str | None:
        """The all-or-nothing static validation of a batch: the first violation's text, or None."""
        return batch_problem(reqs)

    async def track(self, req: TrackRequest) -> dict[str, Any]:
        static_check(req)
        result = (await self.track_many([req]))[0]
        if isinstance(result, LineageValidationError):
            raise result
        return result

    async def track_many(self, reqs: Sequence[TrackRequest], processing_mode: str = "sequential", *,
                         before_commit: Callable[[], None] | None = None) -> list[TrackResult]:
        """Track events in ONE transaction, in list order (both modes), one result each (see
        :mod:`~pattern_tracker.sinks.lineage_pg_write`). ``before_commit`` is called once every
        event is written, just before the commit."""
        del processing_mode
        return await self._run(lambda conn: track_batch(conn, reqs, before_commit))

    async def import_nodes(self, nodes: Sequence[Node]) -> int:
        """Copy nodes of an embedded store in (``lineage copy``): returns how many were new.

        ``nodes`` are :class:`~pattern_tracker.sinks.lineage_layout.Node` records as the LMDB store
        keeps them, in its ``seq`` order (a parent before its children). They keep their node_id,
        lineage_id, event_id, generation, created_at and parent lists; each gets a new ``seq``
        here (the order is kept); edges link to parents by node id, among this call's nodes or
        already stored ones (a parent not found is left unlinked). One transaction per call; a
        node whose (pattern_id, pattern_version) is already stored is skipped, so running a copy
        again, or resuming one, inserts only what is missing. Raises ``UnstorableText`` (a
        ValueError naming the node) for a value PostgreSQL cannot hold (a NUL character).
        """
        return await self._run(lambda conn: import_nodes(conn, nodes))

    async def ancestry(self, pattern_id: str) -> dict[str, Any]:
        return await self._run(lambda conn: walks.ancestry(conn, pattern_id))

    async def descendants(self, pattern_id: str) -> dict[str, Any]:
        return await self._run(lambda conn: walks.descendants(conn, pattern_id))

    async def query(self, file_path: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return await self._run(lambda conn: walks.file_query(conn, file_path, max(0, int(limit))))

    async def count(self) -> int:
        return await self._run(walks.count)

    async def get(self, pattern_id: str, version: str | None = None) -> dict[str, Any] | None:
        return await self._run(lambda conn: walks.get(conn, pattern_id, version))

    async def list_files(self, search: str | None = None, after: str | None = None, limit: int = 50) -> FilesPage:
        return await self._run(lambda conn: walks.list_files(conn, search, after, limit))

    async def status(self) -> str:
        """``operational``, or ``database_unavailable: <reason>`` (within about 2 seconds)."""
        try:
            await self._run(lambda conn: conn.execute("SELECT 1"), timeout=2.0)
        except LineageUnavailable as exc:
            return f"database_unavailable: {await self._why(exc.reason)}"
        return "operational"

    async def _why(self, reason: str) -> str:
        """The pool only knows that no connection came in time; one direct attempt says why (the
        server refusing, not answering, shutting down). A direct connection that succeeds means
        the pool's connections are all busy."""
        try:
            conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(self._conninfo, autocommit=True), 2.0)
        except TimeoutError:
            return "the database does not answer"
        except psycopg.OperationalError as exc:
            return _reason(exc, self._secrets)
        await conn.close()
        return f"all {self.max_size} pooled connections busy ({reason})"

    # -- connections and faults -----------------------------------------------------------------

    async def _run(self, op: Callable[[Conn], Awaitable[T]], timeout: float | None = None) -> T:
        """``op`` on a pooled connection, answered within ``timeout`` (default: the pool, statement
        and connect timeouts together); the database's failures as :class:`LineageUnavailable`.

        ``op`` runs as a task of its own: when its time is up we answer at once, and the task is
        cancelled behind us (psycopg then cancels the statement, or closes a connection whose server
        stopped answering, which can take it seconds more that nobody waits for).
        """
        pool = self._pool
        if pool is None:
            raise LineageUnavailable(COMPONENT, "not started", self.retry_after)
        wait = self.pool_timeout if timeout is None else min(timeout, self.pool_timeout)
        task = asyncio.ensure_future(_on_connection(pool, wait, op))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._op_timeout if timeout is None else timeout + 1.0)
        except TimeoutError:
            raise LineageUnavailable(COMPONENT, "no answer in time", self.retry_after) from None
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from None
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(_consume)

    def _unavailable(self, exc: BaseException) -> LineageUnavailable:
        return LineageUnavailable(COMPONENT, _reason(exc, self._secrets), self.retry_after)


async def _on_connection(pool: AsyncConnectionPool[Any], wait: float, op: Callable[[Conn], Awaitable[T]]) -> T:
    async with pool.connection(timeout=wait) as conn:
        return await op(conn)


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned operation's outcome (asyncio would log it as never retrieved)."""
    if not task.cancelled():
        task.exception()


def _reason(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """A short, password-free reason: the first line of the driver's message."""
    if isinstance(exc, PoolTimeout):
        text = "no database connection in time"
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        text = "statement timed out"
    elif isinstance(exc, psycopg.errors.AdminShutdown):
        text = "the database is shutting down"
    elif isinstance(exc, psycopg.errors.CannotConnectNow):
        text = "the database is starting up"
    else:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        text = lines[0] if lines else type(exc).__name__
        text = text.removeprefix("connection failed: ").replace("FATAL:  ", "")
    return redact_text(text, secrets)[:200]


# What waiting will not fix: the server answered, and said no.
_FOR_GOOD = ("password authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied",
             "password is required", "certificate")


def _refused_for_good(exc: BaseException) -> bool:
    text = str(exc)
    return any(marker in text for marker in _FOR_GOOD)


def _conninfo(url: str, connect_timeout: float, statement_timeout: float) -> tuple[str, tuple[str, ...]]:
    """The connection string: ``url``'s own options kept (sslmode, ...), plus a connect timeout and,
    in ``options``, the statement timeout and UTC session time zone (stored times read back as written)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a PostgreSQL URL: {mask_store_url(url)} ({_reason(exc, ())})") from None
    secret = params.get("password")
    params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
    extra = f"-c statement_timeout={int(statement_timeout * 1000)} -c TimeZone=UTC"
    params["options"] = f"{params['options']} {extra}" if params.get("options") else extra
    return make_conninfo("", **params), ((str(secret),) if secret else ())
