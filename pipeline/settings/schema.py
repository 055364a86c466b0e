"""The configuration schema: msgspec Structs whose ``Meta`` constraints reject out-of-range values.

``Config()`` equals what the shipped ``default.yaml`` says (tests/test_config.py checks both agree),
so an install without that file still has every default. Imports only msgspec and the standard
library: the hook path loads this.
"""

from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

BUILTIN_ORIGIN = "default (built-in)"  # the origin of a value no layer set


PosInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]
PosFloat = Annotated[float, Meta(gt=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
# A map size in MiB: up to 16 TiB (far past any disk here; a larger one overflowed LMDB's size_t).
MapMiB = Annotated[int, Meta(ge=1, le=16 * 1024 * 1024)]


class _Section(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Base of every config section (options are inherited)."""


class PatternTrackingConfig(_Section):
    enabled: bool = True
    cache_size: PosInt = 1000  # bound of the spool, in events
    cache_ttl: PosFloat = 3600.0  # seconds
    batch_size: Annotated[int, Meta(ge=1, le=1000)] = 100
    batch_linger: NonNegFloat = 0.05  # seconds
    max_in_flight_batches: Annotated[int, Meta(ge=1, le=64)] = 4
    overflow_policy: Literal["drop_oldest", "drop_newest", "block"] = "drop_oldest"
    shutdown_timeout: PosFloat = 10.0  # seconds to flush in-flight batches on SIGTERM/SIGINT


class CircuitBreakerConfig(_Section):
    failure_threshold: PosInt = 5
    recovery_timeout: PosFloat = 60.0  # seconds
    half_open_attempts: PosInt = 3
    mode: Literal["consecutive", "failure_rate"] = "consecutive"
    window_size: PosInt = 20
    minimum_calls: PosInt = 10
    failure_rate_threshold: Annotated[float, Meta(gt=0, le=1)] = 0.5


class RetryConfig(_Section):
    max_attempts: PosInt = 3
    base_delay: NonNegFloat = 1.0  # seconds
    max_delay: PosFloat = 30.0  # seconds
    jitter_factor: Fraction = 0.1
    # "default" or "package.module:factory" (operators.backoff.load_policy imports it when a run starts)
    policy: Annotated[str, Meta(pattern=r"^(default|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$",
                                description="'default' or 'package.module:factory'")] = "default"


class ResilienceConfig(_Section):
    circuit_breaker: CircuitBreakerConfig = msgspec.field(default_factory=CircuitBreakerConfig)
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)


class AlertingConfig(_Section):
    enabled: bool = True
    threshold: Fraction = 0.8  # the resilience guide's default (env ALERTING_THRESHOLD)
    channels: list[Literal["log", "console", "webhook"]] = msgspec.field(default_factory=lambda: ["log"])
    webhook_url: NonEmptyStr | None = None  # secret-ish: masked by render_effective


class MonitoringConfig(_Section):
    enabled: bool = True
    interval: PosFloat = 60.0  # seconds
    metrics_retention: PosFloat = 86400.0  # seconds
    status_port: Port = 0  # 0 = off
    alerting: AlertingConfig = msgspec.field(default_factory=AlertingConfig)


class TimeoutsConfig(_Section):
    connect: PosFloat = 2.0
    read: PosFloat = 10.0
    total: PosFloat = 15.0


class ApiConfig(_Section):
    url: NonEmptyStr | None = None  # None = deliver to the embedded lineage store
    token: NonEmptyStr | None = None  # secret
    verify_tls: bool = True
    use_batch_endpoint: bool = True
    timeouts: TimeoutsConfig = msgspec.field(default_factory=TimeoutsConfig)
    max_concurrency: Annotated[int, Meta(ge=1, le=64)] = 4


DEFAULT_IGNORE: tuple[str, ...] = (
    ".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox",
    ".venv", "venv", "env", "node_modules", "dist", "build", "target", ".idea", ".vscode", "*.pyc",
    "*.egg-info", ".DS_Store",
)  # fmt: skip


class WatchConfig(_Section):
    paths: Annotated[list[NonEmptyStr], Meta(min_length=1)] = msgspec.field(default_factory=lambda: ["."])
    ignore: list[NonEmptyStr] = msgspec.field(default_factory=lambda: list(DEFAULT_IGNORE))
    use_gitignore: bool = True
    max_file_size: PosInt = 1048576  # bytes
    debounce_ms: NonNegInt = 50
    step_ms: PosInt = 50
    force_polling: bool = False
    initial_scan: bool = True


class SourcesConfig(_Section):
    enabled: list[Literal["watch", "stdin"]] = msgspec.field(default_factory=lambda: ["watch"])
    watch: WatchConfig = msgspec.field(default_factory=WatchConfig)


class StorageConfig(_Section):
    data_dir: NonEmptyStr | None = None  # None = pattern_tracker.core.store.default_data_dir()
    map_size_mb: MapMiB = 1024
    max_map_size_mb: MapMiB = 65536

    @property
    def data_dir_path(self) -> Path:
        """The data directory: ``data_dir`` (``~`` expanded) or the XDG default."""
        if self.data_dir is None:
            from pattern_tracker.core.store import default_data_dir  # lazy: pattern_tracker.core.store imports lmdb

            return Path(default_data_dir())
        return Path(self.data_dir).expanduser()


class TelemetryConfig(_Section):
    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: NonEmptyStr = "http://localhost:4318"
    service_name: NonEmptyStr = "pattern-tracker"
    event_span_sample_rate: Fraction = 0.01
    prometheus_port: Port = 0  # 0 = off


class ServeConfig(_Section):
    host: NonEmptyStr = "127.0.0.1"
    port: Port = 8053
    token: NonEmptyStr | None = None  # secret
    max_request_bytes: PosInt = 10485760
    rate_limit_per_minute: NonNegInt = 0  # 0 = unlimited
    store: NonEmptyStr | None = None  # None = the embedded LMDB store; postgresql://… (its password a secret)
    pool_min_size: NonNegInt = 1  # PostgreSQL connections kept open per replica
    pool_max_size: PosInt = 10  # at most this many per replica
    connect_timeout: PosFloat = 5.0  # seconds to connect, or to wait for a pooled connection
    statement_timeout: PosFloat = 10.0  # seconds one SQL statement may run


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"
    file: NonEmptyStr | None = None  # None = stderr


DEFAULT_DENY_GLOBS = [
    ".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "*.jks",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc", ".pgpass", ".npmrc", ".pypirc",
    "credentials", "credentials.json", "*.kdbx",
]


class RedactionConfig(_Section):
    enabled: bool = True
    extra_patterns: list[NonEmptyStr] = msgspec.field(default_factory=list)  # regexes, Python syntax
    deny_globs: list[NonEmptyStr] = msgspec.field(default_factory=lambda: list(DEFAULT_DENY_GLOBS))


class HookConfig(_Section):
    log_file: NonEmptyStr | None = None  # None = <data_dir>/hook.log
    spawn_drainer: bool = True
    max_payload_bytes: PosInt = 16 * 1024 * 1024
    timeout: Annotated[int, Meta(ge=1, le=600)] = 10  # seconds, written to settings.json by install-hook


class Config(_Section):
    """The whole configuration. ``Config()`` equals what the shipped ``default.yaml`` says."""

    pattern_tracking: PatternTrackingConfig = msgspec.field(default_factory=PatternTrackingConfig)
    resilience: ResilienceConfig = msgspec.field(default_factory=ResilienceConfig)
    monitoring: MonitoringConfig = msgspec.field(default_factory=MonitoringConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    sources: SourcesConfig = msgspec.field(default_factory=SourcesConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    telemetry: TelemetryConfig = msgspec.field(default_factory=TelemetryConfig)
    serve: ServeConfig = msgspec.field(default_factory=ServeConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    redaction: RedactionConfig = msgspec.field(default_factory=RedactionConfig)
    hook: HookConfig = msgspec.field(default_factory=HookConfig)


class LoadedConfig(msgspec.Struct, kw_only=True):
    """An effective configuration and where each value came from."""

    config: Config
    origins: dict[str, str]  # dotted key -> "default (pattern_tracker/defaults/default.yaml:N)" | "FILE:N" | "env VAR"
    sources: list[str]  # files read, lowest precedence first

    def origin(self, key: str) -> str:
        return self.origins.get(key, BUILTIN_ORIGIN)
