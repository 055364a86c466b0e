"""The settings the hook needs, without paying for YAML and msgspec on every edit.

The full configuration (``pattern_tracker.config``: defaults, ``--config FILE``, environment) is
loaded once and the few values the hook uses are cached as JSON under
``$XDG_CACHE_HOME/pattern-tracker/`` (else ``~/.cache/pattern-tracker/``), keyed by everything
that can change them: the default and override files (path, size, mtime) and every environment
variable the configuration reads. Any change of those gives another key, so the cache is never
stale; it holds no secrets (no tokens, no URLs).
"""

from __future__ import annotations

import json
import os

from pattern_tracker import defaults as _shipped_defaults
from pattern_tracker.identity import sha256

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from typing import Any

# Environment variables the configuration reads (named ones, prefixes of the generic form, and
# what the default data directory depends on).
_ENV_PREFIXES = ("PATTERN_TRACKING_", "PATTERN_TRACKER_", "CIRCUIT_BREAKER_", "EXPONENTIAL_BACKOFF_", "MONITORING_",
                 "ALERTING_", "INTELLIGENCE_SERVICE_URL", "XDG_DATA_HOME", "HOME")
DEFAULT_YAML = os.path.join(os.path.dirname(os.path.abspath(_shipped_defaults.__file__)), "default.yaml")
CACHE_VERSION = 1


def _file_key(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pattern-tracker")


def cache_key(config_path: str | None, env: dict[str, str]) -> str:
    parts = [str(CACHE_VERSION), _file_key(DEFAULT_YAML), _file_key(config_path) if config_path else "-"]
    parts += sorted(f"{k}={v}" for k, v in env.items() if k.startswith(_ENV_PREFIXES))
    return sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:24]


def _from_full_config(config_path: str | None) -> dict[str, Any]:
    """The slow path: load and validate the whole configuration (raises ConfigError)."""
    from pattern_tracker.config import load_config

    cfg = load_config(config_path).config
    return {
        "data_dir": str(cfg.storage.data_dir_path),
        "map_size": cfg.storage.map_size_mb * 1024 * 1024,
        "max_map_size": cfg.storage.max_map_size_mb * 1024 * 1024,
        "enabled": cfg.pattern_tracking.enabled,
        "cache_size": cfg.pattern_tracking.cache_size,
        "overflow_policy": cfg.pattern_tracking.overflow_policy,
        "cache_ttl": cfg.pattern_tracking.cache_ttl,
        "recovery_timeout": cfg.resilience.circuit_breaker.recovery_timeout,
        "max_file_size": cfg.sources.watch.max_file_size,
        "redaction_enabled": cfg.redaction.enabled,
        "extra_patterns": list(cfg.redaction.extra_patterns),
        "deny_globs": list(cfg.redaction.deny_globs),
        "log_file": cfg.hook.log_file,
        "spawn_drainer": cfg.hook.spawn_drainer,
        "max_payload_bytes": cfg.hook.max_payload_bytes,
        "config_path": os.path.abspath(config_path) if config_path else None,
    }


def hook_settings(config_path: str | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The hook's settings from the cache, or from the full configuration (then cached).

    Raises ``pattern_tracker.config.ConfigError`` for a bad configuration (never cached).
    """
    env = dict(os.environ) if env is None else env
    path = os.path.join(_cache_dir(), f"hook-config-{cache_key(config_path, env)}.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)  # type: ignore[no-any-return]
    except (OSError, ValueError):
        pass
    settings = _from_full_config(config_path)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(settings, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the slow path every time, still correct
    return settings
