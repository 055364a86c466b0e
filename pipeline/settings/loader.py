"""Loading: the layers merged in order of precedence, then converted and validated against the schema.

Precedence, lowest to highest: the shipped defaults, the user's file
(``$XDG_CONFIG_HOME/pattern-tracker/config.yaml``, else ``~/.config/pattern-tracker/config.yaml``),
the ``--config`` file, the environment.

A validation failure is turned back into one line naming the key, the value, the layer it came
from and what is allowed.
"""

import functools
import math
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from pattern_tracker.settings.environment import merge_env
from pattern_tracker.settings.errors import ConfigError
from pattern_tracker.settings.introspect import describe_allowed, field_at, leaf_keys, short_repr, unwrap_annotated, value_kind
from pattern_tracker.settings.locations import DEFAULT_LABEL, DEFAULT_YAML, user_config_path
from pattern_tracker.settings.schema import BUILTIN_ORIGIN, Config, LoadedConfig
from pattern_tracker.settings.store_url import STORE_URL_FORM, mask_store_url, store_url_problem
from pattern_tracker.settings.yaml_layer import MergeState, merge_yaml_file, read_config_text

DEFAULT_CONFIG_PATH = Path(DEFAULT_YAML).resolve()


@functools.cache
def _default_state() -> tuple[MergeState, tuple[str, ...]]:
    try:
        text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    except FileNotFoundError:
        # An install without config/ (e.g. a wheel): the Struct defaults mirror the file exactly.
        return MergeState(), ()
    except (OSError, UnicodeDecodeError):
        text = read_config_text(DEFAULT_CONFIG_PATH)  # raises a ConfigError naming the file
    state = MergeState()
    merge_yaml_file(state, text, str(DEFAULT_CONFIG_PATH), lambda line: f"default ({DEFAULT_LABEL}:{line})")
    return state, (str(DEFAULT_CONFIG_PATH),)


# --------------------------------------------------------------------------------------------
# Validation

_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _validation_error(exc: msgspec.ValidationError, state: MergeState) -> ConfigError:
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
    tp = field_at(dotted) if keys else None
    if tp is None:
        return ConfigError(f"{message}")
    origin = state.origins.get(dotted, BUILTIN_ORIGIN)
    value: Any = state.data
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    if dotted in state.env_raw and index is None:
        value = state.env_raw[dotted]
    if index is not None and isinstance(value, list) and index < len(value):
        base, _ = unwrap_annotated(tp)
        if typing.get_origin(base) is list:
            tp = typing.get_args(base)[0]
        value = value[index]
        item_origins = state.item_origins.get(dotted, [])
        if index < len(item_origins):
            origin = item_origins[index]
        dotted = f"{dotted}[{index}]"
    allowed = describe_allowed(tp)
    hint = ""
    if "str" in value_kind(tp) and isinstance(value, (bool, int, float)) and not origin.startswith("env "):
        hint = " (quote it in YAML)"
    return ConfigError(
        f"{dotted} = {short_repr(value)} (from {origin}): expected {allowed}{hint}", key=dotted, origin=origin, allowed=allowed
    )


def _normalise(data: dict[str, Any]) -> None:
    log = data.get("logging")
    if isinstance(log, dict) and isinstance(log.get("level"), str):
        log["level"] = log["level"].strip().upper()


def _finish(state: MergeState, sources: list[str]) -> LoadedConfig:
    _normalise(state.data)
    try:
        config = msgspec.convert(state.data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, state) from None
    _check_finite(config, state)
    _check_patterns(config, state)
    _check_store(config, state)
    _check_http_urls(config, state)
    origins = {}
    for key in leaf_keys(Config):  # every leaf, in section order
        origins[key] = state.origins.get(key, BUILTIN_ORIGIN)
    return LoadedConfig(config=config, origins=origins, sources=sources)


def _check_finite(config: Config, state: MergeState) -> None:
    """A number setting must be finite: ``.inf`` passes every lower bound the schema states (nan
    passes none), and an infinite interval, retention or linger failed later instead, in health,
    metrics and run ('internal error: OverflowError'), or held each batch for good."""
    for key in leaf_keys(Config):
        tp = field_at(key)
        if unwrap_annotated(tp)[0] is not float:
            continue
        value = functools.reduce(getattr, key.split("."), config)
        if not math.isfinite(value):
            origin = state.origins.get(key, BUILTIN_ORIGIN)
            allowed = describe_allowed(tp)
            raise ConfigError(f"{key} = {short_repr(state.env_raw.get(key, value))} (from {origin}): expected {allowed}",
                              key=key, origin=origin, allowed=allowed)


def _check_patterns(config: Config, state: MergeState) -> None:
    """Regular expressions must compile: say which one, where it came from, and why not."""
    key = "redaction.extra_patterns"
    items = state.item_origins.get(key, [])
    for i, pattern in enumerate(config.redaction.extra_patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            origin = items[i] if i < len(items) else state.origins.get(key, BUILTIN_ORIGIN)
            raise ConfigError(
                f"{key}[{i}] = {short_repr(pattern)} (from {origin}): expected a regular expression ({exc})",
                key=f"{key}[{i}]", origin=origin, allowed="a regular expression",
            ) from None


def _check_store(config: Config, state: MergeState) -> None:
    """``serve.store`` must be a PostgreSQL URL; the line shows it with its password masked."""
    url = config.serve.store
    problem = store_url_problem(url) if url is not None else None
    if problem is not None:
        key = "serve.store"
        origin = state.origins.get(key, BUILTIN_ORIGIN)
        raise ConfigError(f"{key} = {short_repr(mask_store_url(url))} (from {origin}): {problem}",
                          key=key, origin=origin, allowed=STORE_URL_FORM)


HTTP_URL_FORM = "an http(s)://HOST[:PORT][/PATH] URL"


def _check_http_urls(config: Config, state: MergeState) -> None:
    """``api.url`` and ``telemetry.otlp_endpoint`` must be URLs their HTTP clients can use: checked
    here, a bad ``api.url`` was 'internal error: ValueError' (exit 1) from every command that
    delivers or reports health after ``config validate`` had passed it, and a bad OTLP endpoint
    was only complained about by the exporter at the end of a run. Shown masked as ``config show``
    shows them."""
    for key, url in (("api.url", config.api.url), ("telemetry.otlp_endpoint", config.telemetry.otlp_endpoint)):
        problem = None if url is None else _http_url_problem(url)
        if problem is None:
            continue
        from pattern_tracker.settings.render import mask_url  # only on this error path (render loads yaml)

        origin = state.origins.get(key, BUILTIN_ORIGIN)
        raise ConfigError(f"{key} = {short_repr(mask_url(url, hide_path=False))} (from {origin}): {problem}",
                          key=key, origin=origin, allowed=HTTP_URL_FORM)


def _http_url_problem(url: str) -> str | None:
    """What keeps ``url`` from being an http(s) URL with a host (and a port 0..65535), or None."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0..65535
    except ValueError as exc:
        return f"expected {HTTP_URL_FORM} ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"expected {HTTP_URL_FORM} ({got})"
    if not parts.hostname:
        return f"expected {HTTP_URL_FORM} (no host)"
    return None


# --------------------------------------------------------------------------------------------
# Public API


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None, *, user_file: bool = True
) -> LoadedConfig:
    """Defaults, then the user's file (if it exists and ``user_file``), then the file at ``path`` (if
    any), then ``env`` (default: ``os.environ``). The user's file is found from ``env``
    (:func:`~pattern_tracker.settings.locations.user_config_path`): an explicit ``env`` without
    XDG_CONFIG_HOME or HOME reads none.

    Raises:
        ConfigError: one line naming the key, value, origin and what is allowed.
    """
    env = os.environ if env is None else env
    base, default_sources = _default_state()
    state = base.copy()
    sources = list(default_sources)
    user = user_config_path(env) if user_file else None
    for label in (user if user is not None and os.path.exists(user) else None, path):
        if label is not None:
            label = os.fspath(label)
            _merge_file_at(state, label)
            sources.append(label)
    merge_env(state, env)
    return _finish(state, sources)


def _merge_file_at(state: MergeState, label: str) -> None:
    text = read_config_text(label)
    merge_yaml_file(state, text, label, lambda line: f"{label}:{line}")


def validate_file(path: str | os.PathLike[str]) -> LoadedConfig:
    """Defaults plus ``path``, ignoring the environment and the user's file. Raises ConfigError."""
    return load_config(path, env={}, user_file=False)


@functools.cache
def default_config() -> Config:
    """The configuration the shipped ``default.yaml`` describes (cached; do not mutate its lists)."""
    base, _ = _default_state()
    return _finish(base.copy(), []).config
