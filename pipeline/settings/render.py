"""``config show``: the effective configuration with the origin of every value, secrets masked."""

from typing import Any

import msgspec
import yaml

from pattern_tracker.settings.introspect import leaf_keys
from pattern_tracker.settings.schema import Config, LoadedConfig
from pattern_tracker.settings.store_url import mask_store_url


_SECRET_KEYS = frozenset({"api.token", "serve.token"})
_URL_KEYS = {"monitoring.alerting.webhook_url": True, "api.url": False, "telemetry.otlp_endpoint": False}  # key -> hide path


def mask_url(url: str, hide_path: bool) -> str:
    """``url`` as printouts show it: credentials masked, the query (and with ``hide_path`` the path) too."""
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
    for key in leaf_keys(Config):
        if key in _SECRET_KEYS or key in _URL_KEYS:
            *parents, name = key.split(".")
            d = data
            for p in parents:
                d = d[p]
            value = d[name]
            if isinstance(value, str):
                d[name] = "***" if key in _SECRET_KEYS else mask_url(value, _URL_KEYS[key])
    if isinstance(config.serve.store, str):
        data["serve"]["store"] = mask_store_url(config.serve.store)  # the user and host shown, the password not
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
    for key in leaf_keys(Config):
        value: Any = data
        for part in key.split("."):
            value = value[part]
        rows.append((f"{key} = {msgspec.json.encode(value).decode()}", loaded.origin(key)))
    width = max((len(left) for left, _ in rows if len(left) <= 64), default=0)  # long lists don't set it
    return "\n".join(f"{left.ljust(width)}    # {origin}" for left, origin in rows)
