"""Building the parts from a Config: the store, the sink, telemetry, sources and the pipeline.

The one place where configuration meets construction, shared by the CLI and the facade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from pattern_tracker.operators.backoff import RetryPolicy, load_policy
from pattern_tracker.operators.breaker import BreakerSettings
from pattern_tracker.state.circuit_store import SharedBreaker
from pattern_tracker.settings.config import Config, ConfigError
from pattern_tracker.core.redact import Redactor
from pattern_tracker.runtime import Feed, Pipeline, RuntimeSettings, Source
from pattern_tracker.state.spool import Spool, SpoolLimits
from pattern_tracker.core.store import MIB, Store
from pattern_tracker.telemetry import Telemetry
from pattern_tracker.sinks.base import Sink
from pattern_tracker.sinks.lineage_contract import AsyncLineageBackend

if TYPE_CHECKING:
    from pattern_tracker.sinks.lineage_pg import PostgresLineage

log = logging.getLogger("pattern_tracker")


def open_store(cfg: Config) -> Store:
    st = cfg.storage
    return Store.open(st.data_dir_path, map_size=st.map_size_mb * MIB, max_map_size=st.max_map_size_mb * MIB)


def open_lineage_backend(cfg: Config, store_url: str | None = None) -> tuple[AsyncLineageBackend, str]:
    """``serve``'s lineage store and how its start line names it (never with a password).

    PostgreSQL at ``store_url`` (``serve --store``), else at ``serve.store``, with the pool and
    timeouts of the ``serve`` section; without either, the embedded LMDB store of
    ``storage.data_dir`` (awaited on a worker thread). Nothing connects here: the app's start does.
    """
    url = store_url if store_url is not None else cfg.serve.store
    if url is None:
        from pattern_tracker.sinks.lineage_store import LineageStore
        from pattern_tracker.sinks.lineage_threaded import ThreadedLineage

        return ThreadedLineage(LineageStore(open_store(cfg))), f"lmdb {cfg.storage.data_dir_path}"
    from pattern_tracker.settings.store_url import mask_store_url

    return postgres_lineage(cfg, url), mask_store_url(url)


def postgres_lineage(cfg: Config, url: str) -> PostgresLineage:
    """A :class:`~pattern_tracker.sinks.lineage_pg.PostgresLineage` at ``url`` with the ``serve``
    section's pool and timeouts (not started)."""
    from pattern_tracker.sinks.lineage_pg import PostgresLineage

    s = cfg.serve
    return PostgresLineage(url, min_size=s.pool_min_size, max_size=s.pool_max_size,
                           connect_timeout=s.connect_timeout, statement_timeout=s.statement_timeout)




def build_sink(cfg: Config, store: Store, telemetry: Telemetry | None = None) -> Sink:
    """The Phase 4 HTTP client when an API URL is configured, else the embedded lineage store.

    With ``telemetry``, every HTTP request the client makes becomes a CLIENT span.
    """
    if cfg.api.url:
        from pattern_tracker.sinks.http import HttpSink

        a = cfg.api
        sink = HttpSink(
            a.url,
            token=a.token,
            verify_tls=a.verify_tls,
            connect_timeout=a.timeouts.connect,
            read_timeout=a.timeouts.read,
            total_timeout=a.timeouts.total,
            use_batch_endpoint=a.use_batch_endpoint,
            max_connections=a.max_concurrency * 2,
        )
        if telemetry is not None:
            telemetry.instrument_sink(sink)
        return sink
    from pattern_tracker.sinks.embedded import EmbeddedSink
    from pattern_tracker.sinks.lineage_store import LineageStore

    return EmbeddedSink(LineageStore(store))


def build_telemetry(cfg: Config) -> Telemetry:
    """Providers for ``telemetry.exporter`` (+ the Prometheus endpoint when ``prometheus_port`` > 0)."""
    t = cfg.telemetry
    try:
        return Telemetry.from_config(t.exporter, t.service_name, t.otlp_endpoint, t.event_span_sample_rate,
                                     prometheus_port=t.prometheus_port)
    except OSError as exc:  # the Prometheus port is taken or not allowed
        raise ConfigError(f"cannot serve Prometheus metrics on 127.0.0.1:{t.prometheus_port}: {exc}",
                          key="telemetry.prometheus_port") from None


def runtime_settings(cfg: Config) -> RuntimeSettings:
    pt = cfg.pattern_tracking
    return RuntimeSettings(
        batch_size=pt.batch_size,
        batch_linger=pt.batch_linger,
        max_in_flight_batches=pt.max_in_flight_batches,
        max_concurrency=cfg.api.max_concurrency,
        shutdown_timeout=pt.shutdown_timeout,
    )


def spool_for(cfg: Config, store: Store) -> Spool:
    pt = cfg.pattern_tracking
    return Spool(store, SpoolLimits(bound=pt.cache_size, policy=pt.overflow_policy, ttl=pt.cache_ttl))


def breaker_for(cfg: Config, store: Store) -> SharedBreaker:
    # The config section and the policy's settings have the same fields.
    return SharedBreaker(store, BreakerSettings(**msgspec.structs.asdict(cfg.resilience.circuit_breaker)))


def retry_policy_for(cfg: Config) -> RetryPolicy:
    try:
        return load_policy(cfg.resilience.retry.policy, cfg.resilience.retry)
    except ValueError as exc:
        raise ConfigError(str(exc), key="resilience.retry.policy") from None


def build_pipeline(cfg: Config, store: Store, sink: Sink | None = None, telemetry: Telemetry | None = None) -> Pipeline:
    from pattern_tracker.settings.hook_settings import clear_config_error

    clear_config_error(store)  # this process read its configuration: a hook's recorded error is over
    telemetry = telemetry or build_telemetry(cfg)
    return Pipeline(
        store,
        sink or build_sink(cfg, store, telemetry),
        telemetry,
        runtime_settings(cfg),
        spool=spool_for(cfg, store),
        breaker=breaker_for(cfg, store),
        policy=retry_policy_for(cfg),
        redactor=Redactor(list(cfg.redaction.extra_patterns), enabled=cfg.redaction.enabled),
        deny_globs=list(cfg.redaction.deny_globs),
    )


def read_text_for(cfg: Config) -> Callable[[str], str | None]:
    """A file reader with the watch source's rules (size limit, binary detection)."""
    from pattern_tracker.core.readfile import read_text_file

    limit = cfg.sources.watch.max_file_size

    def read(path: str) -> str | None:
        result = read_text_file(path, limit)
        return result.text if result.ok else None

    return read


def watch_source(cfg: Config, paths: Sequence[str]) -> tuple[Source, object]:
    """A pipeline source over the watch trees, and its stats object."""
    from pattern_tracker.core.capture import Change
    from pattern_tracker.sources.watch import WatchSettings, WatchSource, WatchStats

    settings = WatchSettings(**{**msgspec.structs.asdict(cfg.sources.watch), "paths": list(paths)})
    stats = WatchStats()
    watcher = WatchSource(paths=list(paths), settings=settings, stats=stats)

    async def run(feed: Feed, stop: asyncio.Event) -> None:
        async with contextlib.aclosing(watcher.changes(stop)) as changes:
            async for change in changes:
                await feed.changes([Change(path=change.path, code=change.code, occurred_at=change.occurred_at)], "watch")

    return run, stats


def stdin_source(cfg: Config, on_error: Callable[[str], None]) -> tuple[Source, object]:
    from pattern_tracker.sources.stdin import StdinStats
    from pattern_tracker.sources.stdin import stdin_source as make

    stats = StdinStats()
    return make(sys.stdin.fileno(), stats, read_text_for(cfg), on_error), stats
