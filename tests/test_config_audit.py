"""A new user's bad settings (docs/configuration.md, "Errors"): each is one line naming the key,
the value and where it came from, exit 2, no traceback — at `config validate` and at the command
that would use it. Real `pattern-tracker` subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clitools import cli_env, run_cli


def one_config_error(r: object, line: str) -> None:
    assert r.returncode == 2, r.stderr  # type: ignore[attr-defined]
    assert r.stderr == f"config error: {line}\n"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("variable", "value", "command", "line"), [
    # each passed the check ("> 0" holds for inf), then:
    ("MONITORING_INTERVAL", ".inf", ["health"],  # internal error: OverflowError, exit 1
     "monitoring.interval = '.inf' (from env MONITORING_INTERVAL): expected a finite number > 0"),
    ("PATTERN_TRACKER__MONITORING__METRICS_RETENTION", "inf", ["metrics"],  # internal error: OverflowError, exit 1
     "monitoring.metrics_retention = 'inf' (from env PATTERN_TRACKER__MONITORING__METRICS_RETENTION): "
     "expected a finite number > 0"),
    ("PATTERN_TRACKER__PATTERN_TRACKING__BATCH_LINGER", ".inf", ["run", "--source", "stdin"],  # each batch held
     "pattern_tracking.batch_linger = '.inf' (from env PATTERN_TRACKER__PATTERN_TRACKING__BATCH_LINGER): "
     "expected a finite number >= 0"),
    ("PATTERN_TRACKING_CACHE_TTL", "1e400", ["status"],  # YAML reads 1e400 as inf
     "pattern_tracking.cache_ttl = '1e400' (from env PATTERN_TRACKING_CACHE_TTL): expected a finite number > 0"),
])
def test_an_infinite_number_setting_is_a_config_error(tmp_path: Path, variable: str, value: str, command: list[str],
                                                      line: str) -> None:
    r = run_cli(*command, env=cli_env(tmp_path / "data", **{variable: value}), input=b"", timeout=30)
    one_config_error(r, line)


def test_config_validate_names_an_infinite_value_and_its_line(tmp_path: Path) -> None:
    f = tmp_path / "pt.yaml"
    f.write_text("pattern_tracking:\n  cache_size: 10\nresilience:\n  circuit_breaker:\n    recovery_timeout: .inf\n")
    r = run_cli("config", "validate", str(f), env=cli_env(tmp_path / "data"))
    one_config_error(r, f"resilience.circuit_breaker.recovery_timeout = inf (from {f}:5): expected a finite number > 0")


@pytest.mark.parametrize(("env", "line"), [
    # each passed `config validate`, then every command that delivers or reports health said
    # 'internal error: ValueError: ...', exit 1
    ({"PATTERN_TRACKING_API_URL": "notaurl"},
     "api.url = 'notaurl' (from env PATTERN_TRACKING_API_URL): expected an http(s)://HOST[:PORT][/PATH] URL (no scheme)"),
    ({"INTELLIGENCE_SERVICE_URL": "ftp://me:hunter2@files?key=hunter2"},
     "api.url = 'ftp://***@files?***' (from env INTELLIGENCE_SERVICE_URL): expected an http(s)://HOST[:PORT][/PATH] URL "
     "(scheme 'ftp')"),
    ({"PATTERN_TRACKING_API_URL": "http://127.0.0.1:99999"},
     "api.url = 'http://127.0.0.1:99999' (from env PATTERN_TRACKING_API_URL): expected an http(s)://HOST[:PORT][/PATH] "
     "URL (Port out of range 0-65535)"),
])
@pytest.mark.parametrize("command", [["run", "--source", "stdin"], ["health"], ["config", "show"]])
def test_an_api_url_the_sink_cannot_use_is_a_config_error(tmp_path: Path, env: dict[str, str], line: str,
                                                          command: list[str]) -> None:
    r = run_cli(*command, env=cli_env(tmp_path / "data", **env), input=b"", timeout=30)
    one_config_error(r, line)
    assert "hunter2" not in r.stderr


def test_the_python_api_raises_config_error_for_a_bad_api_url(tracker_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/python-api.md: 'a bad configuration raises pattern_tracker.ConfigError (one line)'; it
    was a ValueError from the first drain, or service_monitor's 'never raises' status."""
    from pattern_tracker import ConfigError, PatternTracker

    monkeypatch.setenv("PATTERN_TRACKING_API_URL", "localhost:8053")
    with pytest.raises(ConfigError, match=r"^config error: api\.url = 'localhost:8053' \(from env PATTERN_TRACKING_API_URL\)"):
        PatternTracker()


@pytest.mark.parametrize(("yaml_text", "line"), [
    # passed `config validate`; `run` then died with 'internal error: OverflowError' (exit 1)
    ("storage:\n  map_size_mb: 100000000000000000000\n",
     "storage.map_size_mb = 100000000000000000000 (from {f}:2): expected an integer from 1 to 16777216"),
    # passed `config validate`; only `run` refused it
    ("resilience:\n  retry:\n    policy: bogus\n",
     "resilience.retry.policy = 'bogus' (from {f}:3): expected 'default' or 'package.module:factory'"),
])
def test_config_validate_refuses_what_a_run_would(tmp_path: Path, yaml_text: str, line: str) -> None:
    f = tmp_path / "pt.yaml"
    f.write_text(yaml_text)
    env = cli_env(tmp_path / "data")
    one_config_error(run_cli("config", "validate", str(f), env=env), line.format(f=f))
    one_config_error(run_cli("run", "--config", str(f), "--source", "stdin", env=env, input=b"", timeout=30),
                     line.format(f=f))


def test_a_retry_policy_factory_name_passes_validate(tmp_path: Path) -> None:
    f = tmp_path / "pt.yaml"
    f.write_text("resilience:\n  retry:\n    policy: my_pkg.policies:make_policy\n")
    assert run_cli("config", "validate", str(f), env=cli_env(tmp_path / "data")).returncode == 0


@pytest.mark.parametrize(("value", "says"), [
    ("not a url", "(no scheme)"),
    ("ftp://me:hunter2@collector/", "(scheme 'ftp')"),
    ("http://127.0.0.1:99999", "(Port out of range 0-65535)"),
])
def test_an_otlp_endpoint_the_exporter_cannot_use_is_a_config_error(tmp_path: Path, value: str, says: str) -> None:
    """It passed `config validate` and the run (exit 0); only the exporter complained, at the end."""
    f = tmp_path / "pt.yaml"
    f.write_text(f"telemetry:\n  exporter: otlp\n  otlp_endpoint: {value}\n")
    r = run_cli("config", "validate", str(f), env=cli_env(tmp_path / "data"))
    assert r.returncode == 2 and r.stderr.startswith("config error: telemetry.otlp_endpoint = "), r.stderr
    assert r.stderr.endswith(f"(from {f}:3): expected an http(s)://HOST[:PORT][/PATH] URL {says}\n"), r.stderr
    assert "hunter2" not in r.stderr
