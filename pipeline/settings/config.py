"""Configuration: msgspec Structs fed from ``config/default.yaml``, an override file and the environment.

Precedence, lowest to highest:

1. ``config/default.yaml`` — holds every setting, commented. It is the documentation.
2. the file given with ``--config FILE`` (``load_config(path)``) — any subset of the keys.
3. environment variables — the named ones in :data:`ENV_VARS` (and the legacy alias
   ``INTELLIGENCE_SERVICE_URL``), then the generic ``PATTERN_TRACKER__SECTION__KEY[__SUBKEY]``
   for any key. An empty variable counts as unset.

Every effective value keeps its origin (``default (config/default.yaml:12)``, ``FILE:LINE`` or
``env VAR``), and every problem is one :class:`ConfigError` line naming the key, the bad value,
its origin and what is allowed — never a traceback.

The Structs are the schema: ``msgspec.Meta`` constraints reject out-of-range values when the
merged document is converted. Unknown keys are caught while merging, so they can be named with
their line. Imports only msgspec, yaml and the standard library: the hook path loads this.

Examples:
    >>> loaded = load_config("my.yaml")                  # defaults + my.yaml + os.environ
    >>> loaded.config.resilience.retry.max_attempts
    3
    >>> loaded.origins["resilience.retry.max_attempts"]
    'default (config/default.yaml:66)'
    >>> print(render_effective(loaded))                   # one line per key, with its origin
"""

import functools
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta

from pattern_tracker import defaults as _shipped_defaults

__all__ = [
    "ApiConfig",
    "AlertingConfig",
    "CircuitBreakerConfig",
    "Config",
    "ConfigError",
    "DEFAULT_CONFIG_PATH",
    "ENV_ALIASES",
    "ENV_PREFIX",
    "ENV_VARS",
    "LoadedConfig",
    "LoggingConfig",
    "MonitoringConfig",
    "PatternTrackingConfig",
    "ResilienceConfig",
    "RetryConfig",
    "ServeConfig",
    "SourcesConfig",
    "StorageConfig",
    "TelemetryConfig",
    "TimeoutsConfig",
    "WatchConfig",
    "default_config",
    "load_config",
    "render_effective",
    "validate_file",
]

DEFAULT_CONFIG_PATH = Path(_shipped_defaults.__file__).resolve().parent / "default.yaml"
_DEFAULT_LABEL = "config/default.yaml"
_BUILTIN_ORIGIN = "default (built-in)"


# --------------------------------------------------------------------------------------------
# Errors


class ConfigError(Exception):
    """A configuration problem, as one line a user can act on.

    ``str(err)`` is ``"config error: ..."``; ``key``, ``origin`` and ``allowed`` hold the parts
    when known (``None`` otherwise).
    """

    def __init__(self, detail: str, *, key: str | None = None, origin: str | None = None, allowed: str | None = None):
        detail = " ".join(str(detail).splitlines())  # one line, whatever went into it
        super().__init__(detail)
        self.detail = detail
        self.key = key
        self.origin = origin
        self.allowed = allowed

    def __str__(self) -> str:
        return f"config error: {self.detail}"


# --------------------------------------------------------------------------------------------
# Schema

PosInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]
PosFloat = Annotated[float, Meta(gt=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]


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
    policy: NonEmptyStr = "default"


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
    map_size_mb: PosInt = 1024
    max_map_size_mb: PosInt = 65536

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
    """The whole configuration. ``Config()`` equals what ``config/default.yaml`` says."""

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
    origins: dict[str, str]  # dotted key -> "default (config/default.yaml:N)" | "FILE:N" | "env VAR"
    sources: list[str]  # files read, lowest precedence first

    def origin(self, key: str) -> str:
        return self.origins.get(key, _BUILTIN_ORIGIN)


# Named environment variables -> dotted key. Applied after the alias and before the generic form.
ENV_VARS: dict[str, str] = {
    "PATTERN_TRACKING_ENABLED": "pattern_tracking.enabled",
    "PATTERN_TRACKING_CACHE_SIZE": "pattern_tracking.cache_size",
    "PATTERN_TRACKING_CACHE_TTL": "pattern_tracking.cache_ttl",
    "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "resilience.circuit_breaker.failure_threshold",
    "CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "resilience.circuit_breaker.recovery_timeout",
    "EXPONENTIAL_BACKOFF_BASE_DELAY": "resilience.retry.base_delay",
    "EXPONENTIAL_BACKOFF_MAX_DELAY": "resilience.retry.max_delay",
    "MONITORING_ENABLED": "monitoring.enabled",
    "MONITORING_INTERVAL": "monitoring.interval",
    "ALERTING_ENABLED": "monitoring.alerting.enabled",
    "ALERTING_THRESHOLD": "monitoring.alerting.threshold",
    "PATTERN_TRACKING_API_URL": "api.url",
    "PATTERN_TRACKING_API_TOKEN": "api.token",
    "PATTERN_TRACKER_DATA_DIR": "storage.data_dir",
    "PATTERN_TRACKER_LOG_LEVEL": "logging.level",
}
# Legacy names, applied first so that the named variable for the same key wins.
ENV_ALIASES: dict[str, str] = {"INTELLIGENCE_SERVICE_URL": "api.url"}
ENV_PREFIX = "PATTERN_TRACKER__"

_SECRET_KEYS = frozenset({"api.token", "serve.token"})
_URL_KEYS = {"monitoring.alerting.webhook_url": True, "api.url": False, "telemetry.otlp_endpoint": False}  # key -> hide path


# --------------------------------------------------------------------------------------------
# Schema introspection


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation (``Annotated`` kept), in declaration order."""
    return {f.name: f.type for f in msgspec.structs.fields(cls)}


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _unwrap(tp: Any) -> tuple[Any, list[Meta]]:
    if typing.get_origin(tp) is Annotated:
        return tp.__origin__, [m for m in tp.__metadata__ if isinstance(m, Meta)]
    return tp, []


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _kind(tp: Any) -> str:
    """How an env string for this field is read: "str", "optstr", "list" or "yaml"."""
    base, _ = _unwrap(tp)
    args = _union_args(base)
    if args is not None:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and _kind(rest[0]) == "str":
            return "optstr"
        return "yaml"
    if base is str or (typing.get_origin(base) is Literal and all(isinstance(a, str) for a in typing.get_args(base))):
        return "str"
    if typing.get_origin(base) is list:
        return "list"
    return "yaml"


def _num(x: float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _describe(tp: Any) -> str:
    """English for what a field accepts: "an integer >= 1", "one of: a, b", ..."""
    base, metas = _unwrap(tp)
    lo = hi = None
    cons: list[str] = []
    for m in metas:
        if m.ge is not None:
            lo = m.ge
            cons.append(f">= {_num(m.ge)}")
        if m.gt is not None:
            cons.append(f"> {_num(m.gt)}")
        if m.le is not None:
            hi = m.le
            cons.append(f"<= {_num(m.le)}")
        if m.lt is not None:
            cons.append(f"< {_num(m.lt)}")
    bounds = f"from {_num(lo)} to {_num(hi)}" if lo is not None and hi is not None and len(cons) == 2 else " and ".join(cons)
    min_len = next((m.min_length for m in metas if m.min_length is not None), None)
    args = _union_args(base)
    if args is not None:
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if base is bool:
        return "true or false"
    if base is int:
        return f"an integer {bounds}".rstrip()
    if base is float:
        return f"a number {bounds}".rstrip()
    if base is str:
        return "a non-empty string" if min_len else "a string"
    if typing.get_origin(base) is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(base))
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        item_base, item_metas = _unwrap(item)
        if typing.get_origin(item_base) is Literal:
            what = "a list of: " + ", ".join(str(a) for a in typing.get_args(item_base))
        elif item_base is str:
            what = "a list of non-empty strings" if any(m.min_length for m in item_metas) else "a list of strings"
        else:
            what = "a list of " + _describe(item)
        return what + (" (at least one)" if min_len else "")
    if _is_section(base):
        return "a mapping with keys: " + ", ".join(_fields(base))
    return getattr(base, "__name__", str(base))


def _short(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _field_at(dotted: str) -> Any:
    """The annotation of a dotted key, or None when there is no such key."""
    cls: Any = Config
    tp: Any = None
    for part in dotted.split("."):
        if not _is_section(cls) or part not in _fields(cls):
            return None
        tp = _fields(cls)[part]
        cls = tp
    return tp


def _unknown_key(dotted: str, origin: str, cls: type) -> ConfigError:
    allowed = list(_fields(cls))
    name = dotted.rpartition(".")[2]
    hint = ""
    if name:
        import difflib  # only on this error path

        close = difflib.get_close_matches(name.lower(), allowed, n=1)
        if close:
            hint = f" (did you mean {close[0]}?)"
    return ConfigError(
        f"unknown key {dotted} (from {origin}); allowed: {', '.join(allowed)}{hint}",
        key=dotted,
        origin=origin,
        allowed=", ".join(allowed),
    )


# --------------------------------------------------------------------------------------------
# Reading layers

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _State:
    """The document being merged: values, and where each leaf (and list item) came from."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.item_origins: dict[str, list[str]] = {}  # dotted list key -> origin of each item
        self.env_raw: dict[str, str] = {}  # dotted key -> the raw env string that set it

    def set(self, path: list[str], value: Any, origin: str, item_origins: list[str] | None = None) -> None:
        d = self.data
        for part in path[:-1]:
            d = d.setdefault(part, {})
        d[path[-1]] = value
        key = ".".join(path)
        self.origins[key] = origin
        self.env_raw.pop(key, None)
        if item_origins is None:
            self.item_origins.pop(key, None)
        else:
            self.item_origins[key] = item_origins

    def copy(self) -> "_State":
        new = _State()
        new.data = _copy_tree(self.data)
        new.origins = dict(self.origins)
        new.item_origins = {k: list(v) for k, v in self.item_origins.items()}
        new.env_raw = dict(self.env_raw)
        return new


def _copy_tree(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_tree(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v for k, v in d.items()}


def _read_text(path: Path | str) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read config file {path}: {reason}", origin=str(path)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: cannot read config file: not UTF-8 text", origin=f"{path}:{line}") from None


def _yaml_error(exc: Exception, label: str, text: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character
        code = ord(char) if isinstance(char, str) else char
        what = f"#x{code:04x}" if isinstance(code, int) else repr(char)
        return ConfigError(f"{label}:{line}:{col}: malformed YAML: unacceptable character {what}: {exc.reason}", origin=f"{label}:{line}")
    if mark is not None:
        where = f"{label}:{mark.line + 1}:{mark.column + 1}"
        reason = problem or str(exc)
        context = getattr(exc, "context", None)
        if problem and context:  # "while scanning a quoted scalar: found unexpected end of stream"
            reason = f"{context}{',' if problem.startswith('but') else ':'} {problem}"
        return ConfigError(f"{where}: malformed YAML: {reason}", origin=f"{label}:{mark.line + 1}")
    return ConfigError(f"{label}: malformed YAML: {exc}", origin=label)


def _compose(text: str, label: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_Loader)
    except Exception as exc:  # YAMLError, RecursionError on absurd nesting, ...
        err: Exception = exc
        if _Loader is not yaml.SafeLoader:
            try:  # the pure-Python parser's messages are the familiar ones
                yaml.compose(text, Loader=yaml.SafeLoader)
            except Exception as exc2:
                err = exc2
        raise _yaml_error(err, label, text) from None


def _construct(node: yaml.Node, origin: str) -> Any:
    try:
        return yaml.constructor.SafeConstructor().construct_document(node)
    except Exception as exc:  # bad !!tags, impossible timestamps, ...
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{origin}: malformed YAML: {reason}", origin=origin) from None


def _describe_node(node: yaml.Node, origin: str) -> str:
    """The (truncated) repr of a node that is in the wrong place."""
    return _short(_construct(node, origin))


def _merge_mapping(
    state: _State, node: yaml.MappingNode, cls: type, prefix: list[str], where: Any
) -> None:
    """Merge one YAML mapping into ``state`` against Struct ``cls``; ``where(line)`` -> origin."""
    fields = _fields(cls)
    seen: dict[str, int] = {}
    for knode, vnode in node.value:
        line = knode.start_mark.line + 1
        origin = where(line)
        if not isinstance(knode, yaml.ScalarNode):
            raise ConfigError(f"{origin}: keys must be plain names, got {_describe_node(knode, origin)}", origin=origin)
        name = knode.value
        path = [*prefix, name]
        dotted = ".".join(path)
        if name not in fields:
            raise _unknown_key(dotted, origin, cls)
        if name in seen:
            raise ConfigError(
                f"duplicate key {dotted} (from {origin}); first given at line {seen[name]}", key=dotted, origin=origin
            )
        seen[name] = line
        tp = fields[name]
        if _is_section(tp):
            if isinstance(vnode, yaml.MappingNode):
                _merge_mapping(state, vnode, tp, path, where)
            elif isinstance(vnode, yaml.ScalarNode) and vnode.tag == "tag:yaml.org,2002:null":
                continue  # "section:" with every key commented out: no overrides
            else:
                allowed = _describe(tp)
                value = _describe_node(vnode, origin)
                raise ConfigError(
                    f"{dotted} = {value} (from {origin}): {dotted} is a section; expected {allowed}",
                    key=dotted,
                    origin=origin,
                    allowed=allowed,
                )
        else:
            value = _construct(vnode, origin)
            items = None
            if isinstance(vnode, yaml.SequenceNode):
                items = [where(n.start_mark.line + 1) for n in vnode.value]
            state.set(path, value, origin, items)


def _merge_file(state: _State, text: str, label: str, where: Any) -> None:
    root = _compose(text, label)
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"):
        return  # empty file: no overrides
    if not isinstance(root, yaml.MappingNode):
        origin = where(root.start_mark.line + 1)
        allowed = "a mapping of sections: " + ", ".join(_fields(Config))
        value = _describe_node(root, origin)
        raise ConfigError(f"top level = {value} (from {origin}): expected {allowed}", key="", origin=origin, allowed=allowed)
    _merge_mapping(state, root, Config, [], where)


@functools.cache
def _default_state() -> tuple[_State, tuple[str, ...]]:
    try:
        text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    except FileNotFoundError:
        # An install without config/ (e.g. a wheel): the Struct defaults mirror the file exactly.
        return _State(), ()
    except (OSError, UnicodeDecodeError):
        text = _read_text(DEFAULT_CONFIG_PATH)  # raises a ConfigError naming the file
    state = _State()
    _merge_file(state, text, str(DEFAULT_CONFIG_PATH), lambda line: f"default ({_DEFAULT_LABEL}:{line})")
    return state, (str(DEFAULT_CONFIG_PATH),)


# --------------------------------------------------------------------------------------------
# Environment

_NULLS = frozenset({"null", "Null", "NULL", "~"})


def _parse_env(raw: str, tp: Any) -> Any:
    kind = _kind(tp)
    if kind == "str":
        return raw
    if kind == "optstr":
        return None if raw.strip() in _NULLS else raw
    try:
        value = yaml.load(raw, Loader=_Loader)
    except Exception:
        value = raw
    if kind == "list" and isinstance(value, str):
        value = [p.strip() for p in value.split(",") if p.strip()]
    return value


def _env_path(var: str, env_value: str) -> list[str]:
    """Resolve ``PATTERN_TRACKER__A__B`` to a leaf path, or raise a ConfigError."""
    origin = f"env {var}"
    parts = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
    cls: Any = Config
    path: list[str] = []
    for part in parts:
        if not _is_section(cls):
            dotted = ".".join([*path, part])
            raise ConfigError(
                f"unknown key {dotted} (from {origin}); {'.'.join(path)} is a value, not a section",
                key=dotted,
                origin=origin,
            )
        path.append(part)
        if part not in _fields(cls):
            raise _unknown_key(".".join(path), origin, cls)
        cls = _fields(cls)[part]
    if _is_section(cls):
        dotted = ".".join(path)
        keys = ", ".join(_fields(cls))
        raise ConfigError(
            f"{dotted} = {_short(env_value)} (from {origin}): {dotted} is a section, not a value;"
            f" set one of its keys ({keys}) with {var}__KEY",
            key=dotted,
            origin=origin,
            allowed=keys,
        )
    return path


def _merge_env(state: _State, env: Mapping[str, str]) -> None:
    plan: list[tuple[str, list[str]]] = []
    for table in (ENV_ALIASES, ENV_VARS):
        for var, dotted in table.items():
            if env.get(var):
                plan.append((var, dotted.split(".")))
    generic = sorted(v for v in env if v.upper().startswith(ENV_PREFIX) and env[v])
    plan.extend((var, _env_path(var, env[var])) for var in generic)
    for var, path in plan:
        raw = env[var]
        dotted = ".".join(path)
        state.set(path, _parse_env(raw, _field_at(dotted)), f"env {var}")
        state.env_raw[dotted] = raw


# --------------------------------------------------------------------------------------------
# Validation

_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _validation_error(exc: msgspec.ValidationError, state: _State) -> ConfigError:
    message = str(exc)
    head, sep, tail = message.rpartition(" - at `")
    if not sep:
        return ConfigError(message)
    keys: list[str] = []
    index: int | None = None
    for name, idx in _PATH_TOKEN.findall(tail.rstrip("`")[1:]):
        if idx:
            index = int(idx)
            break
        keys.append(name)
    dotted = ".".join(keys)
    tp = _field_at(dotted) if keys else None
    if tp is None:
        return ConfigError(f"{message}")
    origin = state.origins.get(dotted, _BUILTIN_ORIGIN)
    value: Any = state.data
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    if dotted in state.env_raw and index is None:
        value = state.env_raw[dotted]
    if index is not None and isinstance(value, list) and index < len(value):
        base, _ = _unwrap(tp)
        if typing.get_origin(base) is list:
            tp = typing.get_args(base)[0]
        value = value[index]
        item_origins = state.item_origins.get(dotted, [])
        if index < len(item_origins):
            origin = item_origins[index]
        dotted = f"{dotted}[{index}]"
    allowed = _describe(tp)
    hint = ""
    if "str" in _kind(tp) and isinstance(value, (bool, int, float)) and not origin.startswith("env "):
        hint = " (quote it in YAML)"
    return ConfigError(
        f"{dotted} = {_short(value)} (from {origin}): expected {allowed}{hint}", key=dotted, origin=origin, allowed=allowed
    )


def _normalise(data: dict[str, Any]) -> None:
    log = data.get("logging")
    if isinstance(log, dict) and isinstance(log.get("level"), str):
        log["level"] = log["level"].strip().upper()


def _finish(state: _State, sources: list[str]) -> LoadedConfig:
    _normalise(state.data)
    try:
        config = msgspec.convert(state.data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, state) from None
    _check_patterns(config, state)
    origins = {}
    for key in _leaf_keys(Config):  # every leaf, in section order
        origins[key] = state.origins.get(key, _BUILTIN_ORIGIN)
    return LoadedConfig(config=config, origins=origins, sources=sources)


def _check_patterns(config: Config, state: _State) -> None:
    """Regular expressions must compile: say which one, where it came from, and why not."""
    key = "redaction.extra_patterns"
    items = state.item_origins.get(key, [])
    for i, pattern in enumerate(config.redaction.extra_patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            origin = items[i] if i < len(items) else state.origins.get(key, _BUILTIN_ORIGIN)
            raise ConfigError(
                f"{key}[{i}] = {_short(pattern)} (from {origin}): expected a regular expression ({exc})",
                key=f"{key}[{i}]", origin=origin, allowed="a regular expression",
            ) from None


def _leaf_keys(cls: type, prefix: str = "") -> Iterator[str]:
    for name, tp in _fields(cls).items():
        if _is_section(tp):
            yield from _leaf_keys(tp, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


# --------------------------------------------------------------------------------------------
# Public API


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Defaults, then the file at ``path`` (if any), then ``env`` (default: ``os.environ``).

    Raises:
        ConfigError: one line naming the key, value, origin and what is allowed.
    """
    base, default_sources = _default_state()
    state = base.copy()
    sources = list(default_sources)
    if path is not None:
        label = os.fspath(path)
        text = _read_text(label)
        _merge_file(state, text, label, lambda line: f"{label}:{line}")
        sources.append(label)
    _merge_env(state, os.environ if env is None else env)
    return _finish(state, sources)


def validate_file(path: str | os.PathLike[str]) -> LoadedConfig:
    """Defaults plus ``path``, ignoring the environment. Raises ConfigError."""
    return load_config(path, env={})


@functools.cache
def default_config() -> Config:
    """The configuration ``config/default.yaml`` describes (cached; do not mutate its lists)."""
    base, _ = _default_state()
    return _finish(base.copy(), []).config


def _mask_url(url: str, hide_path: bool) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or not parts.netloc:
        return "***" if hide_path else url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    path, query, fragment = parts.path, parts.query, parts.fragment
    if hide_path:
        path = "/***" if (path not in ("", "/") or query or fragment) else path
        query = fragment = ""
    elif query:
        query = "***"
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _masked(config: Config) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(config)
    for key in _leaf_keys(Config):
        if key in _SECRET_KEYS or key in _URL_KEYS:
            *parents, name = key.split(".")
            d = data
            for p in parents:
                d = d[p]
            value = d[name]
            if isinstance(value, str):
                d[name] = "***" if key in _SECRET_KEYS else _mask_url(value, _URL_KEYS[key])
    return data


def render_effective(loaded: LoadedConfig, fmt: str = "text") -> str:
    """The effective configuration, secrets masked ("***"), without a trailing newline.

    ``text``: one ``key = value    # origin`` line per leaf, in section order (values as JSON).
    ``yaml`` / ``json``: a nested document of the effective values.
    """
    data = _masked(loaded.config)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip("\n")
    if fmt == "json":
        return msgspec.json.format(msgspec.json.encode(data), indent=2).decode()
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}: use text, yaml or json")
    rows = []
    for key in _leaf_keys(Config):
        value: Any = data
        for part in key.split("."):
            value = value[part]
        rows.append((f"{key} = {msgspec.json.encode(value).decode()}", loaded.origin(key)))
    width = max((len(left) for left, _ in rows if len(left) <= 64), default=0)  # long lists don't set it
    return "\n".join(f"{left.ljust(width)}    # {origin}" for left, origin in rows)
