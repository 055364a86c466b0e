"""Configuration: msgspec Structs fed from the shipped defaults, a user file, an override file and the environment.

Precedence, lowest to highest:

1. the shipped ``default.yaml`` (package data ``pattern_tracker/defaults/``; ``config/default.yaml`` in
   the source tree) — holds every setting, commented. It is the documentation.
2. the user's file, found without flags: ``$XDG_CONFIG_HOME/pattern-tracker/config.yaml``, else
   ``~/.config/pattern-tracker/config.yaml`` (when it exists) — any subset of the keys.
3. the file given with ``--config FILE`` (``load_config(path)``) — any subset of the keys.
4. environment variables — the named ones in :data:`ENV_VARS` (and the legacy alias
   ``INTELLIGENCE_SERVICE_URL``), then the generic ``PATTERN_TRACKER__SECTION__KEY[__SUBKEY]``
   for any key. An empty variable counts as unset.

Every effective value keeps its origin (``default (pattern_tracker/defaults/default.yaml:12)``,
``FILE:LINE`` or ``env VAR``), and every problem is one :class:`ConfigError` line naming the key,
the bad value, its origin and what is allowed — never a traceback.

This module is the one callers import; the work is done along its seams:
:mod:`~pattern_tracker.settings.schema` (the Structs), :mod:`~pattern_tracker.settings.introspect`
(reading them), :mod:`~pattern_tracker.settings.yaml_layer` and
:mod:`~pattern_tracker.settings.environment` (the layers), :mod:`~pattern_tracker.settings.loader`
(merging and validation) and :mod:`~pattern_tracker.settings.render` (``config show``). Imports only
msgspec, yaml and the standard library: the hook path loads this.

Examples:
    >>> loaded = load_config("my.yaml")                  # defaults + user file + my.yaml + os.environ
    >>> loaded.config.resilience.retry.max_attempts
    3
    >>> loaded.origins["resilience.retry.max_attempts"]
    'default (pattern_tracker/defaults/default.yaml:69)'
    >>> print(render_effective(loaded))                   # one line per key, with its origin
"""

from pattern_tracker.settings.environment import ENV_ALIASES, ENV_PREFIX, ENV_VARS
from pattern_tracker.settings.errors import ConfigError
from pattern_tracker.settings.loader import DEFAULT_CONFIG_PATH, default_config, load_config, validate_file
from pattern_tracker.settings.render import render_effective
from pattern_tracker.settings.schema import (
    AlertingConfig,
    ApiConfig,
    CircuitBreakerConfig,
    Config,
    LoadedConfig,
    LoggingConfig,
    MonitoringConfig,
    PatternTrackingConfig,
    ResilienceConfig,
    RetryConfig,
    ServeConfig,
    SourcesConfig,
    StorageConfig,
    TelemetryConfig,
    TimeoutsConfig,
    WatchConfig,
)

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
