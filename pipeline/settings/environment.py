"""The environment layer: named variables, the legacy alias and ``PATTERN_TRACKER__SECTION__KEY``.

An empty variable counts as unset. Strings for string fields are taken verbatim; anything else is
read as a YAML scalar (lists also as ``a,b,c``).
"""

from collections.abc import Mapping
from typing import Any

import yaml

from pattern_tracker.settings.errors import ConfigError
from pattern_tracker.settings.introspect import (
    field_at,
    fields_of,
    is_section,
    leaf_keys,
    short_repr,
    unknown_key_error,
    value_kind,
)
from pattern_tracker.settings.schema import Config
from pattern_tracker.settings.yaml_layer import YAML_LOADER, MergeState


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
    "PATTERN_TRACKER_SERVE_STORE": "serve.store",
}
# Legacy names, applied first so that the named variable for the same key wins.
ENV_ALIASES: dict[str, str] = {"INTELLIGENCE_SERVICE_URL": "api.url"}
ENV_PREFIX = "PATTERN_TRACKER__"
# Our own names: a variable of these prefixes that is none of the above is a typo, not someone
# else's (the guide's other names, CIRCUIT_BREAKER_… or MONITORING_…, are too generic to claim).
OWN_PREFIXES = ("PATTERN_TRACKING_", "PATTERN_TRACKER_")


_NULLS = frozenset({"null", "Null", "NULL", "~"})


def _parse_env(raw: str, tp: Any) -> Any:
    kind = value_kind(tp)
    if kind == "str":
        return raw
    if kind == "optstr":
        return None if raw.strip() in _NULLS else raw
    try:
        value = yaml.load(raw, Loader=YAML_LOADER)
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
        if not is_section(cls):
            dotted = ".".join([*path, part])
            raise ConfigError(
                f"unknown key {dotted} (from {origin}); {'.'.join(path)} is a value, not a section",
                key=dotted,
                origin=origin,
            )
        path.append(part)
        if part not in fields_of(cls):
            raise unknown_key_error(".".join(path), origin, cls)
        cls = fields_of(cls)[part]
    if is_section(cls):
        dotted = ".".join(path)
        keys = ", ".join(fields_of(cls))
        raise ConfigError(
            f"{dotted} = {short_repr(env_value)} (from {origin}): {dotted} is a section, not a value;"
            f" set one of its keys ({keys}) with {var}__KEY",
            key=dotted,
            origin=origin,
            allowed=keys,
        )
    return path


def _unknown_named(var: str) -> ConfigError:
    """A ``PATTERN_TRACKING_…``/``PATTERN_TRACKER_…`` variable that names nothing: the closest named
    one, or the generic form of a key with that name (``PATTERN_TRACKING_BATCH_SIZE`` →
    ``PATTERN_TRACKER__PATTERN_TRACKING__BATCH_SIZE``)."""
    import difflib  # only on this error path

    name = var.split("_", 2)[2].lower()
    generic = [ENV_PREFIX + key.replace(".", "__").upper() for key in leaf_keys(Config) if key.rpartition(".")[2] == name]
    close = generic or difflib.get_close_matches(var, list(ENV_VARS), n=1, cutoff=0.85)
    hint = f"did you mean {close[0]}?" if close else f"any key can be set as {ENV_PREFIX}SECTION__KEY"
    return ConfigError(f"unknown environment variable {var} (not one of the {len(ENV_VARS)} named ones "
                       f"docs/configuration.md lists); {hint}", key=var, origin=f"env {var}")


def merge_env(state: MergeState, env: Mapping[str, str]) -> None:
    """The environment over ``state``: the alias, then the named variables, then the generic form."""
    for var in sorted(env):
        if env[var] and var.startswith(OWN_PREFIXES) and var not in ENV_VARS and not var.upper().startswith(ENV_PREFIX):
            raise _unknown_named(var)
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
        state.set(path, _parse_env(raw, field_at(dotted)), f"env {var}")
        state.env_raw[dotted] = raw
