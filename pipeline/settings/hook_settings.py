"""The settings the hook needs, without paying for YAML and msgspec on every edit.

The full configuration (``pattern_tracker.settings.config``: defaults, the user's file, ``--config FILE``,
environment) is loaded once and the few values the hook uses are cached as JSON under
``$XDG_CACHE_HOME/pattern-tracker/`` (else ``~/.cache/pattern-tracker/``), keyed by everything
that can change them: the default, user and override files (path, size, mtime) and every environment
variable the configuration reads. Any change of those gives another key, so the cache is never
stale; it holds no secrets (no tokens, no URLs).

A configuration that cannot be read must not cost the edit: :func:`fallback_settings` gives the
settings of what can still be read (the failing file or variables left out, the data directory
among them), and :func:`note_config_error` records the error in the store's shared state, where
``health``, ``status`` and ``metrics`` show it until a process reads the configuration again.
"""

from __future__ import annotations

import json
import os

from pattern_tracker.core.identity import sha256
from pattern_tracker.settings.locations import DEFAULT_YAML, user_config_path

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from typing import Any

# Environment variables the configuration reads (named ones, prefixes of the generic form, and
# what the default data directory and the user's file depend on).
_ENV_PREFIXES = ("PATTERN_TRACKING_", "PATTERN_TRACKER_", "CIRCUIT_BREAKER_", "EXPONENTIAL_BACKOFF_", "MONITORING_",
                 "ALERTING_", "INTELLIGENCE_SERVICE_URL", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "HOME")
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
    user = user_config_path(env)
    parts = [str(CACHE_VERSION), _file_key(DEFAULT_YAML), _file_key(user) if user else "-",
             _file_key(config_path) if config_path else "-"]
    parts += sorted(f"{k}={v}" for k, v in env.items() if k.startswith(_ENV_PREFIXES))
    return sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:24]


def _from_full_config(config_path: str | None) -> dict[str, Any]:
    """The slow path: load and validate the whole configuration (raises ConfigError)."""
    from pattern_tracker.settings.config import load_config

    return _settings_of(load_config(config_path).config, config_path)


def _settings_of(cfg: Any, config_path: str | None) -> dict[str, Any]:
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

    Raises ``pattern_tracker.settings.config.ConfigError`` for a bad configuration (never cached).
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


# -- a configuration that cannot be read --------------------------------------------------

# While the configuration is broken the hook cannot know the spool bound the user chose: it keeps
# every edit (and every one already waiting) up to this many, then drops the newest (counted).
FALLBACK_SPOOL_BOUND = 1_000_000
CONFIG_ERROR_KEY = b"config_error"  # in the store's ``state`` database: JSON {"error", "source", "at"}


def _salvage(config_path: str | None, env: dict[str, str]) -> Any:
    """The configuration without the sources that fail: each environment variable a ConfigError
    names is left out, then the user's file when the error is in it, else the ``--config`` file; the
    built-in defaults when nothing else is left."""
    from pattern_tracker.settings.config import ConfigError, default_config, load_config

    path, env, user_file = config_path, dict(env), True
    user = user_config_path(env)
    for _ in range(len(env) + 3):
        try:
            return load_config(path, env=env, user_file=user_file).config
        except ConfigError as exc:
            origin = exc.origin or ""
            if origin.startswith("env ") and origin[4:] in env:
                del env[origin[4:]]
            elif user_file and user is not None and (origin == user or origin.startswith(f"{user}:")):
                user_file = False
            elif path is not None:
                path = None
            elif user_file:
                user_file = False
            else:
                break
    data_dir = {k: v for k, v in env.items() if k in ("PATTERN_TRACKER_DATA_DIR", "PATTERN_TRACKER__STORAGE__DATA_DIR")}
    try:
        return load_config(None, env=data_dir, user_file=False).config  # an error we cannot place: at least the data directory
    except ConfigError:
        return default_config()


def fallback_settings(config_path: str | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The hook's settings when ``hook_settings`` raised ConfigError: what can be read, never cached.

    The data directory (and the rest) come from the sources that still load, so the edit lands
    where the drainer will look once the setting is fixed; no drainer is started (it could not
    read the configuration either); the spool keeps every edit (FALLBACK_SPOOL_BOUND, drop_newest).
    """
    env = dict(os.environ) if env is None else env
    settings = _settings_of(_salvage(config_path, env), config_path)
    settings.update(spawn_drainer=False, overflow_policy="drop_newest",
                    cache_size=max(int(settings["cache_size"]), FALLBACK_SPOOL_BOUND))
    return settings


def note_config_error(txn: Any, store: Any, error: str | None, source: str, now: float) -> None:
    """Inside a write transaction: record the one-line ``error`` seen by ``source``, or clear it (None)."""
    db = store.db("state")
    if error is None:
        txn.delete(CONFIG_ERROR_KEY, db=db)
    else:
        line = " ".join(error.split())[:1000]
        txn.put(CONFIG_ERROR_KEY, json.dumps({"error": line, "source": source, "at": now}).encode(), db=db)


def recorded_config_error(store: Any) -> dict[str, Any] | None:
    """``{"error", "source", "at"}`` of the configuration error a hook recorded, or None."""
    raw = store.read(lambda txn: txn.get(CONFIG_ERROR_KEY, db=store.db("state")))
    if not raw:
        return None
    try:
        doc = json.loads(raw)
        return {"error": str(doc["error"]), "source": str(doc.get("source") or "?"), "at": float(doc.get("at") or 0)}
    except (ValueError, TypeError, KeyError):
        return None


def clear_config_error(store: Any) -> None:
    """The configuration was read: a recorded error is over (a write only when there is one)."""
    if store.read(lambda txn: txn.get(CONFIG_ERROR_KEY, db=store.db("state"))) is not None:
        store.write(lambda txn: note_config_error(txn, store, None, "", 0.0))
