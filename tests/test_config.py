"""Configuration: defaults, override file, environment, origins, one-line errors, rendering."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pattern_tracker.settings.config import (
    DEFAULT_CONFIG_PATH,
    ENV_ALIASES,
    ENV_VARS,
    Config,
    ConfigError,
    LoadedConfig,
    default_config,
    load_config,
    render_effective,
    validate_file,
)
from pattern_tracker.settings.introspect import leaf_keys as _leaf_keys
from pattern_tracker.settings.locations import user_config_path
from tests.clitools import BIN, cli_env, run_cli, stop
from tests.hooktools import payloads, retarget, spooled

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LINES = DEFAULT_CONFIG_PATH.read_text().splitlines()


def write(tmp_path: Path, text: str, name: str = "override.yaml") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(p)


def error_of(path: str | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith("config error: "), msg
    assert "Traceback" not in msg
    return msg


def get(cfg: Config, dotted: str):
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


# ---------------------------------------------------------------------------------------------
# Defaults


def test_defaults_equal_documented_values() -> None:
    loaded = load_config(env={})
    cfg = loaded.config
    assert cfg == Config() == default_config()
    assert loaded.sources == [str(DEFAULT_CONFIG_PATH)]
    pt = cfg.pattern_tracking
    assert (pt.enabled, pt.cache_size, pt.cache_ttl, pt.batch_size, pt.batch_linger) == (True, 1000, 3600, 100, 0.05)
    assert (pt.max_in_flight_batches, pt.overflow_policy) == (4, "drop_oldest")
    cb = cfg.resilience.circuit_breaker
    assert (cb.failure_threshold, cb.recovery_timeout, cb.half_open_attempts, cb.mode) == (5, 60, 3, "consecutive")
    assert (cb.window_size, cb.minimum_calls, cb.failure_rate_threshold) == (20, 10, 0.5)
    r = cfg.resilience.retry
    assert (r.max_attempts, r.base_delay, r.max_delay, r.jitter_factor, r.policy) == (3, 1.0, 30, 0.1, "default")
    m = cfg.monitoring
    assert (m.enabled, m.interval, m.metrics_retention, m.status_port) == (True, 60, 86400, 0)
    a = m.alerting
    assert (a.enabled, a.threshold, a.channels, a.webhook_url) == (True, 0.8, ["log"], None)  # the guide's 0.8
    from pattern_tracker.usecases.alerting import AlertRules
    from pattern_tracker.usecases.health import Rules

    assert Rules().success_threshold == AlertRules().threshold == a.threshold  # the code defaults agree
    api = cfg.api
    assert (api.url, api.token, api.verify_tls, api.use_batch_endpoint, api.max_concurrency) == (None, None, True, True, 4)
    assert (api.timeouts.connect, api.timeouts.read, api.timeouts.total) == (2, 10, 15)
    s = cfg.sources
    assert s.enabled == ["watch"]
    w = s.watch
    assert w.paths == ["."]
    assert w.ignore[:3] == [".git", ".hg", ".svn"] and "node_modules" in w.ignore and "*.egg-info" in w.ignore
    assert len(w.ignore) == 21
    assert (w.use_gitignore, w.max_file_size, w.debounce_ms, w.step_ms, w.force_polling, w.initial_scan) == (
        True, 1048576, 50, 50, False, True,
    )  # fmt: skip
    st_ = cfg.storage
    assert (st_.data_dir, st_.map_size_mb, st_.max_map_size_mb) == (None, 1024, 65536)
    t = cfg.telemetry
    assert (t.exporter, t.otlp_endpoint, t.service_name, t.event_span_sample_rate, t.prometheus_port) == (
        "none", "http://localhost:4318", "pattern-tracker", 0.01, 0,
    )  # fmt: skip
    sv = cfg.serve
    assert (sv.host, sv.port, sv.token, sv.max_request_bytes, sv.rate_limit_per_minute) == (
        "127.0.0.1", 8053, None, 10485760, 0,
    )  # fmt: skip
    lg = cfg.logging
    assert (lg.level, lg.format, lg.file) == ("INFO", "text", None)


def test_default_yaml_holds_every_key_commented_with_its_line() -> None:
    loaded = load_config(env={})
    leaves = list(_leaf_keys(Config))
    assert set(loaded.origins) == set(leaves)
    for key in leaves:
        origin = loaded.origins[key]
        m = re.fullmatch(r"default \(pattern_tracker/defaults/default\.yaml:(\d+)\)", origin)
        assert m, (key, origin)
        line = DEFAULT_LINES[int(m.group(1)) - 1]
        assert line.strip().startswith(key.rpartition(".")[2] + ":"), (key, line)
        assert DEFAULT_LINES[int(m.group(1)) - 2].strip().startswith("#"), f"{key} has no comment"


def test_default_yaml_documents_every_named_env_var() -> None:
    text = DEFAULT_CONFIG_PATH.read_text()
    for var in [*ENV_VARS, *ENV_ALIASES]:
        assert var in text, var


def test_example_file_is_valid() -> None:
    loaded = validate_file(str(ROOT / "config" / "example.yaml"))
    assert loaded.config.api.url == "https://lineage.example.internal:8053"
    assert loaded.config.resilience.circuit_breaker.mode == "failure_rate"


def test_config_is_frozen() -> None:
    cfg = default_config()
    with pytest.raises(AttributeError):
        cfg.pattern_tracking.batch_size = 5  # type: ignore[misc]


def test_data_dir_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_config().storage.data_dir_path == tmp_path / "xdg" / "pattern-tracker"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_config().storage.data_dir_path == Path.home() / ".local" / "share" / "pattern-tracker"
    cfg = load_config(env={"PATTERN_TRACKER_DATA_DIR": "~/pt-data"}).config
    assert cfg.storage.data_dir_path == Path.home() / "pt-data"
    cfg = load_config(env={"PATTERN_TRACKER_DATA_DIR": str(tmp_path / "d")}).config
    assert cfg.storage.data_dir_path == tmp_path / "d"


def test_import_stays_light() -> None:
    code = (
        "import sys, pattern_tracker.settings.config as c; c.load_config(env={});"
        "heavy = [m for m in ('aiohttp', 'reactivex', 'opentelemetry', 'lmdb', 'watchfiles') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------------------------------------
# Precedence and origins


def test_file_overrides_defaults_and_env_overrides_both(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        # a comment
        pattern_tracking:
          cache_size: 50
          batch_size: 10
        resilience:
          retry:

            max_attempts: 7
        """,
    )
    loaded = load_config(path, env={"PATTERN_TRACKING_CACHE_SIZE": "99"})
    cfg = loaded.config
    assert cfg.pattern_tracking.cache_size == 99
    assert cfg.pattern_tracking.batch_size == 10
    assert cfg.resilience.retry.max_attempts == 7
    assert cfg.resilience.retry.base_delay == 1.0
    assert loaded.origins["pattern_tracking.cache_size"] == "env PATTERN_TRACKING_CACHE_SIZE"
    assert loaded.origins["pattern_tracking.batch_size"] == f"{path}:4"
    assert loaded.origins["resilience.retry.max_attempts"] == f"{path}:8"
    assert loaded.origins["resilience.retry.base_delay"].startswith("default (pattern_tracker/defaults/default.yaml:")
    assert loaded.sources == [str(DEFAULT_CONFIG_PATH), path]
    assert loaded.origin("pattern_tracking.batch_size") == f"{path}:4"


def test_file_lists_replace_default_lists(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  watch:\n    ignore:\n      - .git\n      - '*.log'\n")
    loaded = validate_file(path)
    assert loaded.config.sources.watch.ignore == [".git", "*.log"]
    assert loaded.origins["sources.watch.ignore"] == f"{path}:3"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "null\n", "api:\n  # url: x\n"])
def test_empty_file_or_section_means_no_overrides(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert validate_file(path).config == Config()


def test_validate_file_ignores_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATTERN_TRACKING_CACHE_SIZE", "lots")
    path = write(tmp_path, "pattern_tracking:\n  batch_size: 5\n")
    loaded = validate_file(path)
    assert loaded.config.pattern_tracking.cache_size == 1000
    with pytest.raises(ConfigError):
        load_config(path)  # env=None means os.environ


# A valid, non-default raw value for each named variable.
NAMED_VALUES = {
    "PATTERN_TRACKING_ENABLED": ("false", False),
    "PATTERN_TRACKING_CACHE_SIZE": ("5", 5),
    "PATTERN_TRACKING_CACHE_TTL": ("1.5", 1.5),
    "CIRCUIT_BREAKER_FAILURE_THRESHOLD": ("9", 9),
    "CIRCUIT_BREAKER_RECOVERY_TIMEOUT": ("12", 12.0),
    "EXPONENTIAL_BACKOFF_BASE_DELAY": ("0", 0.0),
    "EXPONENTIAL_BACKOFF_MAX_DELAY": ("99.5", 99.5),
    "MONITORING_ENABLED": ("no", False),
    "MONITORING_INTERVAL": ("5", 5.0),
    "ALERTING_ENABLED": ("0", False),
    "ALERTING_THRESHOLD": ("0.5", 0.5),
    "PATTERN_TRACKING_API_URL": ("http://svc:8053", "http://svc:8053"),
    "PATTERN_TRACKING_API_TOKEN": ("0123", "0123"),  # verbatim: not YAML octal, not an int
    "PATTERN_TRACKER_DATA_DIR": ("/tmp/x", "/tmp/x"),
    "PATTERN_TRACKER_LOG_LEVEL": ("debug", "DEBUG"),  # case-insensitive
    "PATTERN_TRACKER_SERVE_STORE": ("postgresql://u:pw@db:5432/lineage", "postgresql://u:pw@db:5432/lineage"),
}


@pytest.mark.parametrize("var", sorted(ENV_VARS))
def test_each_named_env_var_sets_its_key(var: str) -> None:
    raw, expected = NAMED_VALUES[var]
    loaded = load_config(env={var: raw})
    key = ENV_VARS[var]
    assert get(loaded.config, key) == expected
    assert loaded.origins[key] == f"env {var}"


def test_intelligence_service_url_alias() -> None:
    loaded = load_config(env={"INTELLIGENCE_SERVICE_URL": "http://old:1"})
    assert loaded.config.api.url == "http://old:1"
    assert loaded.origins["api.url"] == "env INTELLIGENCE_SERVICE_URL"
    loaded = load_config(env={"INTELLIGENCE_SERVICE_URL": "http://old:1", "PATTERN_TRACKING_API_URL": "http://new:2"})
    assert loaded.config.api.url == "http://new:2"
    assert loaded.origins["api.url"] == "env PATTERN_TRACKING_API_URL"


def test_env_beats_file_with_alias_too(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  url: http://file:3\n")
    loaded = load_config(path, env={"INTELLIGENCE_SERVICE_URL": "http://old:1"})
    assert loaded.config.api.url == "http://old:1"


def test_generic_env_form() -> None:
    env = {
        "PATTERN_TRACKER__RESILIENCE__RETRY__MAX_ATTEMPTS": "8",
        "pattern_tracker__Api__Timeouts__Total": "3.5",
        "PATTERN_TRACKER__MONITORING__ALERTING__CHANNELS": "[log, webhook]",
        "PATTERN_TRACKER__SOURCES__ENABLED": "watch, stdin",
        "PATTERN_TRACKER__SOURCES__WATCH__PATHS": "src",
        "PATTERN_TRACKER__SOURCES__WATCH__FORCE_POLLING": "true",
        "PATTERN_TRACKER__SERVE__TOKEN": "null",
        "PATTERN_TRACKER__TELEMETRY__SERVICE_NAME": "123",
    }
    loaded = load_config(env=env)
    cfg = loaded.config
    assert cfg.resilience.retry.max_attempts == 8
    assert cfg.api.timeouts.total == 3.5
    assert cfg.monitoring.alerting.channels == ["log", "webhook"]
    assert cfg.sources.enabled == ["watch", "stdin"]
    assert cfg.sources.watch.paths == ["src"]
    assert cfg.sources.watch.force_polling is True
    assert cfg.serve.token is None
    assert cfg.telemetry.service_name == "123"
    assert loaded.origins["api.timeouts.total"] == "env pattern_tracker__Api__Timeouts__Total"
    assert loaded.origins["resilience.retry.max_attempts"] == "env PATTERN_TRACKER__RESILIENCE__RETRY__MAX_ATTEMPTS"


def test_generic_env_beats_named_env() -> None:
    env = {"PATTERN_TRACKING_CACHE_SIZE": "5", "PATTERN_TRACKER__PATTERN_TRACKING__CACHE_SIZE": "6"}
    loaded = load_config(env=env)
    assert loaded.config.pattern_tracking.cache_size == 6
    assert loaded.origins["pattern_tracking.cache_size"] == "env PATTERN_TRACKER__PATTERN_TRACKING__CACHE_SIZE"


def test_empty_env_var_counts_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, "pattern_tracking:\n  cache_size: 7\n")
    env = {"PATTERN_TRACKING_CACHE_SIZE": "", "PATTERN_TRACKER__API__URLL": "", "PATTERN_TRACKING_API_URL": ""}
    loaded = load_config(path, env=env)
    assert loaded.config.pattern_tracking.cache_size == 7
    assert loaded.origins["pattern_tracking.cache_size"] == f"{path}:2"
    assert loaded.config.api.url is None


def test_log_level_is_case_insensitive_in_files(tmp_path: Path) -> None:
    assert validate_file(write(tmp_path, "logging:\n  level: warning\n")).config.logging.level == "WARNING"


# ---------------------------------------------------------------------------------------------
# Errors: one line, naming key, value, origin and what is allowed


def test_out_of_range_exact_message(tmp_path: Path) -> None:
    path = write(tmp_path, "# x\n\n\nresilience:\n  retry:\n    base_delay: 2\n    max_attempts: -1\n")
    msg = error_of(path)
    assert msg == f"config error: resilience.retry.max_attempts = -1 (from {path}:7): expected an integer >= 1"


@pytest.mark.parametrize(
    ("text", "key", "value", "line", "allowed"),
    [
        ("pattern_tracking:\n  enabled: maybe\n", "pattern_tracking.enabled", "'maybe'", 2, "true or false"),
        ("pattern_tracking:\n  cache_size: 1.5\n", "pattern_tracking.cache_size", "1.5", 2, "an integer >= 1"),
        ("pattern_tracking:\n  cache_size: [1]\n", "pattern_tracking.cache_size", "[1]", 2, "an integer >= 1"),
        ("pattern_tracking:\n  batch_size: 1001\n", "pattern_tracking.batch_size", "1001", 2, "from 1 to 1000"),
        ("pattern_tracking:\n  cache_ttl: 0\n", "pattern_tracking.cache_ttl", "0", 2, "a finite number > 0"),
        ("pattern_tracking:\n  overflow_policy: drop_all\n", "pattern_tracking.overflow_policy", "'drop_all'", 2,
         "one of: drop_oldest, drop_newest, block"),
        ("resilience:\n  circuit_breaker:\n    failure_rate_threshold: 0\n",
         "resilience.circuit_breaker.failure_rate_threshold", "0", 3, "a number > 0 and <= 1"),
        ("resilience:\n  retry:\n    jitter_factor: 1.5\n", "resilience.retry.jitter_factor", "1.5", 3, "from 0 to 1"),
        ("serve:\n  port: 70000\n", "serve.port", "70000", 2, "an integer from 0 to 65535"),
        ("api:\n  token: 12345\n", "api.token", "12345", 2, "a non-empty string or null"),
        ("api:\n  url: ''\n", "api.url", "''", 2, "a non-empty string or null"),
        ("logging:\n  format: xml\n", "logging.format", "'xml'", 2, "one of: json, text"),
        ("monitoring:\n  alerting:\n    channels: log\n", "monitoring.alerting.channels", "'log'", 3,
         "a list of: log, console, webhook"),
        ("sources:\n  watch:\n    paths: []\n", "sources.watch.paths", "[]", 3, "(at least one)"),
    ],
)  # fmt: skip
def test_wrong_type_or_range_in_file(tmp_path: Path, text: str, key: str, value: str, line: int, allowed: str) -> None:
    path = write(tmp_path, text)
    msg = error_of(path)
    assert f"{key} = {value} (from {path}:{line}): expected " in msg, msg
    assert allowed in msg, msg


def test_bad_list_item_points_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  enabled:\n    - watch\n    - ftp\n")
    msg = error_of(path)
    assert msg == f"config error: sources.enabled[1] = 'ftp' (from {path}:4): expected one of: watch, stdin"


def test_long_values_are_truncated(tmp_path: Path) -> None:
    path = write(tmp_path, f"logging:\n  format: {'x' * 500}\n")
    msg = error_of(path)
    assert "x" * 500 not in msg and "..." in msg and len(msg) < 250


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write(tmp_path, "pattern_tracking:\n  enabled: true\n  cache_sise: 5\n")
    msg = error_of(path)
    assert msg.startswith(
        f"config error: unknown key pattern_tracking.cache_sise (from {path}:3); "
        "allowed: enabled, cache_size, cache_ttl, batch_size, batch_linger, max_in_flight_batches, overflow_policy"
    ), msg
    assert "did you mean cache_size?" in msg


def test_unknown_deeply_nested_key(tmp_path: Path) -> None:
    path = write(tmp_path, "resilience:\n  retry:\n    max_attempt: 5\n")
    msg = error_of(path)
    assert f"unknown key resilience.retry.max_attempt (from {path}:3); allowed: max_attempts," in msg


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  url: http://x\npatern_tracking:\n  enabled: true\n")
    msg = error_of(path)
    assert f"unknown key patern_tracking (from {path}:3); allowed: pattern_tracking, resilience, monitoring," in msg


def test_unknown_key_in_generic_env() -> None:
    msg = error_of(env={"PATTERN_TRACKER__API__URLL": "http://x"})
    assert msg.startswith("config error: unknown key api.urll (from env PATTERN_TRACKER__API__URLL); allowed: url, token")
    msg = error_of(env={"PATTERN_TRACKER__NOPE__X": "1"})
    assert "unknown key nope (from env PATTERN_TRACKER__NOPE__X); allowed: pattern_tracking," in msg
    msg = error_of(env={"PATTERN_TRACKER__API__URL__X": "1"})
    assert "unknown key api.url.x (from env PATTERN_TRACKER__API__URL__X)" in msg
    msg = error_of(env={"PATTERN_TRACKER__API__TIMEOUTS": "5"})
    assert "api.timeouts = '5' (from env PATTERN_TRACKER__API__TIMEOUTS)" in msg and "connect, read, total" in msg


def test_unknown_variable_of_our_own_prefixes_is_an_error_naming_the_likely_one() -> None:
    """A typo'd PATTERN_TRACKING_…/PATTERN_TRACKER_… variable was ignored without a word (the
    setting silently left at its default); other tools' generic names are left alone."""
    msg = error_of(env={"PATTERN_TRACKING_CACHESIZE": "5"})
    assert msg.startswith("config error: unknown environment variable PATTERN_TRACKING_CACHESIZE (")
    assert msg.endswith("did you mean PATTERN_TRACKING_CACHE_SIZE?"), msg
    msg = error_of(env={"PATTERN_TRACKING_BATCH_SIZE": "50"})  # a key's name with the named form's prefix
    assert msg.endswith("did you mean PATTERN_TRACKER__PATTERN_TRACKING__BATCH_SIZE?"), msg
    msg = error_of(env={"PATTERN_TRACKER_FOO": "1"})
    assert msg.endswith("any key can be set as PATTERN_TRACKER__SECTION__KEY"), msg
    for harmless in ({"PATTERN_TRACKING_NOPE": ""}, {"CIRCUIT_BREAKER_SOMETHING_ELSE": "3"}, {"MONITORING_URL": "x"}):
        load_config(None, env=harmless)  # empty counts as unset; not our names: ignored


def test_malformed_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "pattern_tracking:\n  enabled: true\n  batch_size: 5\n  x: y: z\n")
    msg = error_of(path)
    assert msg == f"config error: {path}:4:7: malformed YAML: mapping values are not allowed here"


@pytest.mark.parametrize(
    "text",
    ["a: [1, 2\n", "a:\n\tb: 1\n", "a: 'x\n", "logging:\n  file: !!python/object:os.system x\n", "a: *nope\n", "a: 1\n---\nb: 2\n"],
)
def test_malformed_yaml_variants(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    msg = error_of(path)
    assert f"{path}:" in msg and "malformed YAML" in msg


def test_bad_yaml_value_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "logging:\n  file: !!python/name:os.system\n")
    msg = error_of(path)
    assert f"{path}:2: malformed YAML" in msg


def test_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "serve:\n  port: 1\n  port: 2\n")
    msg = error_of(path)
    assert msg == f"config error: duplicate key serve.port (from {path}:3); first given at line 2"


def test_unparsable_env_var_exact_message() -> None:
    msg = error_of(env={"PATTERN_TRACKING_CACHE_SIZE": "lots"})
    assert msg == "config error: pattern_tracking.cache_size = 'lots' (from env PATTERN_TRACKING_CACHE_SIZE): expected an integer >= 1"


@pytest.mark.parametrize(
    ("var", "raw", "allowed"),
    [
        ("ALERTING_THRESHOLD", "2", "a number from 0 to 1"),
        ("MONITORING_ENABLED", "perhaps", "true or false"),
        ("MONITORING_INTERVAL", "[1", "a finite number > 0"),
        ("PATTERN_TRACKER_LOG_LEVEL", "chatty", "one of: DEBUG, INFO, WARNING, ERROR"),
        ("PATTERN_TRACKER__SERVE__PORT", "http", "an integer from 0 to 65535"),
        ("PATTERN_TRACKER__API__TIMEOUTS__CONNECT", "{a: 1}", "a finite number > 0"),
    ],
)
def test_bad_env_values(var: str, raw: str, allowed: str) -> None:
    msg = error_of(env={var: raw})
    assert f" = {raw!r} (from env {var}): expected {allowed}" in msg, msg


def test_bad_env_list_item() -> None:
    msg = error_of(env={"PATTERN_TRACKER__MONITORING__ALERTING__CHANNELS": "log,sms"})
    assert msg == (
        "config error: monitoring.alerting.channels[1] = 'sms' "
        "(from env PATTERN_TRACKER__MONITORING__ALERTING__CHANNELS): expected one of: log, console, webhook"
    )


def test_missing_file() -> None:
    assert error_of("/nope.yaml") == "config error: cannot read config file /nope.yaml: No such file or directory"


def test_unreadable_file(tmp_path: Path) -> None:
    assert error_of(str(tmp_path)) == f"config error: cannot read config file {tmp_path}: Is a directory"
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"logging:\n  file: caf\xe9\n")
    assert error_of(str(path)) == f"config error: {path}:2: cannot read config file: not UTF-8 text"


@pytest.mark.parametrize(("text", "value"), [("- a\n- b\n", "['a', 'b']"), ("just a string\n", "'just a string'"), ("42\n", "42")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, value: str) -> None:
    path = write(tmp_path, text)
    msg = error_of(path)
    assert msg.startswith(f"config error: top level = {value} (from {path}:1): expected a mapping of sections: pattern_tracking,")


@pytest.mark.parametrize(("text", "value"), [("api: http://x\n", "'http://x'"), ("resilience:\n  retry: [1, 2]\n", "[1, 2]")])
def test_section_given_as_scalar_or_list(tmp_path: Path, text: str, value: str) -> None:
    path = write(tmp_path, text)
    msg = error_of(path)
    section = "api" if text.startswith("api") else "resilience.retry"
    line = 1 if section == "api" else 2
    assert msg.startswith(f"config error: {section} = {value} (from {path}:{line}): {section} is a section"), msg
    assert "expected a mapping with keys: " in msg


def test_non_string_key(tmp_path: Path) -> None:
    path = write(tmp_path, "? [a, b]\n: 1\n")
    msg = error_of(path)
    assert f"{path}:1" in msg and "keys must be plain names" in msg


def test_config_error_carries_parts(tmp_path: Path) -> None:
    path = write(tmp_path, "serve:\n  port: -5\n")
    with pytest.raises(ConfigError) as info:
        validate_file(path)
    err = info.value
    assert (err.key, err.origin, err.allowed) == ("serve.port", f"{path}:2", "an integer from 0 to 65535")


# ---------------------------------------------------------------------------------------------
# Rendering


SECRET_ENV = {
    "PATTERN_TRACKING_API_TOKEN": "s3cret-api",
    "PATTERN_TRACKER__SERVE__TOKEN": "s3cret-serve",
    "PATTERN_TRACKER__MONITORING__ALERTING__WEBHOOK_URL": "https://user:s3cret-pw@hooks.example.com/services/T0/B0/s3cret-path?k=s3cret-q",
    "PATTERN_TRACKING_API_URL": "https://bob:s3cret-url@lineage.example.com:8443/v1?key=s3cret-qs",
}


def test_render_text_masks_secrets_and_shows_origins(tmp_path: Path) -> None:
    path = write(tmp_path, "pattern_tracking:\n  cache_size: 12\n")
    loaded = load_config(path, env=SECRET_ENV)
    text = render_effective(loaded)
    assert "s3cret" not in text
    lines = text.splitlines()
    assert len(lines) == len(loaded.origins)
    assert [ln.split(" = ")[0] for ln in lines] == list(_leaf_keys(Config))  # section order
    by_key = {ln.split(" = ")[0]: ln for ln in lines}
    assert re.fullmatch(rf'pattern_tracking\.cache_size = 12 +# {re.escape(path)}:2', by_key["pattern_tracking.cache_size"])
    assert by_key["api.token"].startswith('api.token = "***"') and "# env PATTERN_TRACKING_API_TOKEN" in by_key["api.token"]
    assert by_key["serve.token"].startswith('serve.token = "***"')
    assert '"https://***@hooks.example.com/***"' in by_key["monitoring.alerting.webhook_url"]
    assert '"https://***@lineage.example.com:8443/v1?***"' in by_key["api.url"]
    assert by_key["logging.file"].startswith("logging.file = null")
    assert "# default (pattern_tracker/defaults/default.yaml:" in by_key["logging.file"]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_render_documents_are_the_effective_config(fmt: str) -> None:
    loaded = load_config(env={**SECRET_ENV, "PATTERN_TRACKING_CACHE_SIZE": "77"})
    out = render_effective(loaded, fmt)
    assert "s3cret" not in out
    doc = yaml.safe_load(out) if fmt == "yaml" else json.loads(out)
    assert doc["pattern_tracking"]["cache_size"] == 77
    assert doc["api"]["token"] == "***" and doc["serve"]["token"] == "***"
    expected = msgspec.to_builtins(loaded.config)
    for section in ("api", "serve", "monitoring"):  # the ones with masked values
        del doc[section]
        del expected[section]
    assert doc == expected


def test_render_leaves_unset_secrets_null() -> None:
    out = render_effective(load_config(env={}), "json")
    doc = json.loads(out)
    assert doc["api"]["token"] is None and doc["monitoring"]["alerting"]["webhook_url"] is None
    with pytest.raises(ValueError):
        render_effective(load_config(env={}), "toml")


def test_loaded_config_shape() -> None:
    loaded = load_config(env={})
    assert isinstance(loaded, LoadedConfig)
    assert isinstance(loaded.config, Config) and isinstance(loaded.origins, dict) and isinstance(loaded.sources, list)


# ---------------------------------------------------------------------------------------------
# Properties: junk never escapes as anything but ConfigError

SECTION_KEYS = list(_leaf_keys(Config))
NAMES = sorted({p for k in SECTION_KEYS for p in k.split(".")})
junk_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
    st.sampled_from(["", "~", "null", "yes", "0x1F", "1e3", ".inf", "-.nan", "2001-02-30", "[a", "{", "a: b"]),
)  # fmt: skip
junk_trees = st.recursive(
    junk_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=8)), children, max_size=4),
    ),
    max_leaves=12,
)
key_paths = st.sampled_from(SECTION_KEYS).map(lambda k: k.split("."))


def _check(path: str | None, env: dict[str, str]) -> None:
    try:
        loaded = load_config(path, env=env)
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith("config error: ") and "\n" not in msg and "\r" not in msg
    else:
        render_effective(loaded)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=100).map(lambda b: b.decode("latin-1"))))
def test_junk_yaml_text_only_raises_config_error(tmp_path: Path, text: str) -> None:
    p = tmp_path / "junk.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    _check(str(p), {})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=junk_trees, leaf_path=key_paths, leaf=junk_trees, junk_top=st.booleans())
def test_junk_yaml_documents_only_raise_config_error(tmp_path: Path, tree, leaf_path, leaf, junk_top: bool) -> None:
    doc: dict = {}
    d = doc
    for part in leaf_path[:-1]:
        d = d.setdefault(part, {})
    d[leaf_path[-1]] = leaf  # a junk value under a real key
    if isinstance(tree, dict):
        for k, v in tree.items():  # junk keys inside a real section
            doc[leaf_path[0]].setdefault(k, v)
    p = tmp_path / "junk.yaml"
    p.write_text(yaml.safe_dump(tree if junk_top else doc))
    _check(str(p), {})


env_names = st.one_of(
    st.sampled_from(sorted([*ENV_VARS, *ENV_ALIASES])),
    key_paths.map(lambda parts: "PATTERN_TRACKER__" + "__".join(parts).upper()),
    st.text(alphabet="ABCXYZ_", max_size=12).map(lambda s: "PATTERN_TRACKER__" + s),
)
env_values = st.one_of(st.text(max_size=40).filter(lambda s: "\x00" not in s), junk_scalars.map(str))


@settings(max_examples=300, deadline=None)
@given(env=st.dictionaries(env_names, env_values, max_size=5))
def test_junk_env_only_raises_config_error(env: dict[str, str]) -> None:
    _check(None, env)


# ---------------------------------------------------------------------------------------------
# The user's file: ~/.config/pattern-tracker/config.yaml, between the defaults and --config


def user_file(env: dict[str, str], text: str) -> str:
    """Write the user's config file the environment ``env`` finds; its path."""
    path = Path(user_config_path(env) or "")
    assert path.is_absolute(), env.get("XDG_CONFIG_HOME")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def shown(env: dict[str, str], *args: str) -> dict[str, str]:
    """``config show``: dotted key -> the rest of its line (value and origin)."""
    out = run_cli(*args, "config", "show", env=env)
    assert out.returncode == 0, out.stderr
    return {ln.split(" = ")[0]: ln.split(" = ", 1)[1] for ln in out.stdout.splitlines()}


def test_user_config_path_follows_xdg_then_home(tmp_path: Path) -> None:
    home, xdg = str(tmp_path / "home"), str(tmp_path / "xdg")
    assert user_config_path({"XDG_CONFIG_HOME": xdg, "HOME": home}) == f"{xdg}/pattern-tracker/config.yaml"
    assert user_config_path({"HOME": home}) == f"{home}/.config/pattern-tracker/config.yaml"
    assert user_config_path({"XDG_CONFIG_HOME": "relative/dir", "HOME": home}) == f"{home}/.config/pattern-tracker/config.yaml"
    assert user_config_path({"XDG_CONFIG_HOME": ""}) is None and user_config_path({}) is None


def test_user_file_sits_between_defaults_and_the_config_file(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    path = user_file(env, "pattern_tracking:\n  cache_size: 321\n  batch_size: 7\n")
    loaded = load_config(env=env)
    assert (loaded.config.pattern_tracking.cache_size, loaded.origins["pattern_tracking.cache_size"]) == (321, f"{path}:2")
    assert loaded.sources == [str(DEFAULT_CONFIG_PATH), path]
    override = write(tmp_path, "pattern_tracking:\n  cache_size: 654\n")
    loaded = load_config(override, env={**env, "PATTERN_TRACKING_CACHE_TTL": "5"})
    assert loaded.origins["pattern_tracking.cache_size"] == f"{override}:2"
    assert loaded.origins["pattern_tracking.batch_size"] == f"{path}:3"
    assert loaded.origins["pattern_tracking.cache_ttl"] == "env PATTERN_TRACKING_CACHE_TTL"
    assert loaded.sources == [str(DEFAULT_CONFIG_PATH), path, override]
    # Not read without a home in the given environment, nor by validate_file, nor when asked not to.
    assert load_config(env={}).config.pattern_tracking.cache_size == 1000
    assert validate_file(override).origins["pattern_tracking.batch_size"].startswith("default (")
    assert load_config(env=env, user_file=False).config.pattern_tracking.cache_size == 1000


def test_cli_user_file_shows_its_origin_and_takes_effect(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    path = user_file(env, "# mine\npattern_tracking:\n  enabled: false\n  cache_size: 321\n")
    by_key = shown(env)
    assert re.fullmatch(rf"321 +# {re.escape(path)}:4", by_key["pattern_tracking.cache_size"])
    assert re.fullmatch(r"100 +# default \(pattern_tracker/defaults/default\.yaml:\d+\)", by_key["pattern_tracking.batch_size"])
    out = run_cli("run", env=env, timeout=30)
    assert out.returncode == 0
    assert f"pattern_tracking.enabled = false, from {path}:3" in out.stderr


def test_cli_user_file_home_fallback(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", HOME=str(tmp_path / "home"))
    del env["XDG_CONFIG_HOME"]
    path = user_file(env, "serve:\n  port: 9999\n")
    assert path == str(tmp_path / "home" / ".config" / "pattern-tracker" / "config.yaml")
    assert re.fullmatch(rf"9999 +# {re.escape(path)}:2", shown(env)["serve.port"])


def test_cli_config_file_overrides_user_file_and_env_overrides_both(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    mine = user_file(env, "pattern_tracking:\n  cache_size: 321\n  batch_size: 7\n  cache_ttl: 11\n")
    override = write(tmp_path, "pattern_tracking:\n  cache_size: 654\n  cache_ttl: 22\n")
    by_key = shown({**env, "PATTERN_TRACKING_CACHE_TTL": "33"}, "--config", override)
    assert re.fullmatch(rf"654 +# {re.escape(override)}:2", by_key["pattern_tracking.cache_size"])
    assert re.fullmatch(rf"7 +# {re.escape(mine)}:3", by_key["pattern_tracking.batch_size"])
    assert re.fullmatch(r"33\.0 +# env PATTERN_TRACKING_CACHE_TTL", by_key["pattern_tracking.cache_ttl"])


@pytest.mark.parametrize(("text", "line"), [("pattern_tracking:\n  cache_size: [1\n", 3),
                                            ("pattern_tracking:\n  cache_size: lots\n", 2),
                                            ("pattern_tracking:\n  cach_size: 1\n", 2)])
def test_cli_malformed_user_file_is_one_line_and_exit_2(tmp_path: Path, text: str, line: int) -> None:
    env = cli_env(tmp_path / "data")
    path = user_file(env, text)
    for args in (["config", "show"], ["status"]):
        out = run_cli(*args, env=env)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stdout == "" and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("config error: ") and f"{path}:{line}" in out.stderr, out.stderr
    # `config validate FILE` checks FILE alone: the user's file is not part of it.
    ok = write(tmp_path, "serve:\n  port: 1\n")
    assert run_cli("config", "validate", ok, env=env).returncode == 0


def test_hook_sees_a_changed_user_file_at_once(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data", PATTERN_TRACKER__HOOK__SPAWN_DRAINER="false")
    del env["PATTERN_TRACKER_DATA_DIR"]  # the user's file says where the edits go

    def edit() -> None:
        doc = retarget(payloads()[0], tmp_path)
        out = run_cli("hook", env=env, input=json.dumps(doc).encode())
        assert out.returncode == 0 and out.stderr == "", out.stderr

    first, second = tmp_path / "first", tmp_path / "second-dir"
    user_file(env, f"storage:\n  data_dir: {first}\n")
    edit()
    assert len(spooled(first)) == 1
    user_file(env, f"storage:\n  data_dir: {second}\n")
    edit()  # no wait: the settings cache is keyed on the file's size and mtime
    assert len(spooled(second)) == 1 and len(spooled(first)) == 1


# ---------------------------------------------------------------------------------------------
# Shipped chaos schedules by name: `serve --chaos mixed` (a wheel user has no config/chaos/)


def test_serve_chaos_accepts_a_shipped_schedule_name(tmp_path: Path) -> None:
    proc = subprocess.Popen([str(BIN), "serve", "--port", "0", "--chaos", "mixed", "--seed", "3"],
                            env=cli_env(tmp_path / "data"), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not any("serving Phase 4 API on" in x for x in lines):
            line = proc.stderr.readline().decode()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
        text = "".join(lines)
        assert "serving Phase 4 API on" in text, text
        assert re.search(r"chaos: schedule \S*pattern_tracker/defaults/chaos/mixed\.yaml: \d+ phase", text), text
        assert "seed 3 (given)" in text
    finally:
        stop(proc)


def test_serve_chaos_unknown_name_is_one_line_exit_2(tmp_path: Path) -> None:
    out = run_cli("serve", "--port", "0", "--chaos", "no-such-schedule", env=cli_env(tmp_path / "data"), timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "cannot read chaos schedule no-such-schedule" in out.stderr

