"""A new user's bad inputs to the Python API (docs/python-api.md): each is one exception naming
the argument, raised before anything is written, and never an event queued that cannot be
delivered. Real parts: the facade over a real LMDB data directory, the CLI in subprocesses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pattern_tracker import PatternTracker
from tests.clitools import cli_env, run_cli

BAD_TIMES = [  # what each did before: queued, then ...
    (math.nan, ValueError, "got nan"),  # quarantined by the next drain ("JSON is malformed"): lost
    (math.inf, ValueError, "got inf"),  # the same
    (1e300, ValueError, "got 1e+300"),  # stored; `query --file` then failed: internal error OverflowError
    (-1, ValueError, "got -1"),  # stored as a time before 1970
    ("1700000000", TypeError, "must be a number, got str"),
    (True, TypeError, "must be a number, got bool"),
]


@pytest.mark.parametrize(("when", "kind", "got"), BAD_TIMES)
def test_a_bad_occurred_at_is_refused_before_anything_is_queued(tracker_env: Path, when: object, kind: type,
                                                                 got: str) -> None:
    with PatternTracker() as t:
        with pytest.raises(kind) as err:
            t.track_pattern_creation("x = 1\n", {"file_path": "a.py", "occurred_at": when}, deliver="none")
        assert str(err.value).startswith("context['occurred_at'] (epoch seconds) must be ")
        assert got in str(err.value)
        assert t.pattern_cache.size == 0
        ok = t.track_pattern_creation("x = 1\n", {"file_path": "a.py", "occurred_at": 1_700_000_000}, deliver="inline")
        assert ok["queued"] and ok["drain"]["delivered"] == 1
        assert t.pattern_cache.stats()["size"] == 0 and t.get_health_summary()["dead_letters"] == 0


def test_stdin_refuses_a_time_that_is_no_date_and_delivers_the_rest(tmp_path: Path) -> None:
    """The same rule at the stdin door (core.capture.check_storable, shared by every door)."""
    lines = [{"file_path": str(tmp_path / "a.py"), "code": "a", "occurred_at": 1e300},
             {"file_path": str(tmp_path / "b.py"), "code": "b", "occurred_at": -5},
             {"file_path": str(tmp_path / "c.py"), "code": "c", "occurred_at": 1_700_000_000.5}]
    env = cli_env(tmp_path / "data")
    r = run_cli("run", "--source", "stdin", env=env, input="".join(json.dumps(x) + "\n" for x in lines).encode())
    assert "stdin line 1: change record: occurred_at (epoch seconds) must be a finite number at least 0 and at most" \
           " 2.53402e+11, got 1e+300" in r.stderr
    assert "stdin line 2: change record: occurred_at (epoch seconds) must be" in r.stderr and "got -5" in r.stderr
    assert "delivered 1," in r.stderr
    q = run_cli("query", "--file", str(tmp_path / "c.py"), env=env)
    assert q.returncode == 0 and "2023-11-14T22:13:20" in q.stdout


@pytest.mark.parametrize(("window", "kind", "got"), [
    (math.nan, ValueError, "got nan"),  # ValueError: cannot convert float NaN to integer
    (math.inf, ValueError, "got inf"),  # OverflowError: cannot convert float infinity to integer
    (-5, ValueError, "got -5"),  # silently an empty window: 0 requests
    (0, ValueError, "got 0"),
    pytest.param(10**400, ValueError, "got 10000000000000000000…", id="10**400"),  # OverflowError: int too large
    ("60", TypeError, "must be a number, got str"),  # was read as 60 s
])
def test_get_error_metrics_refuses_a_window_that_is_no_duration(tracker_env: Path, window: object, kind: type,
                                                                 got: str) -> None:
    with PatternTracker() as t:
        with pytest.raises(kind) as err:
            t.get_error_metrics(window=window)
        assert str(err.value).startswith("window (seconds) must be ") and got in str(err.value)


def test_a_window_longer_than_the_epoch_is_all_of_history(tracker_env: Path, tmp_path: Path) -> None:
    """window=1e12 (API) and `metrics --since 1e12` (CLI) reached before 1970: 'OverflowError: can't
    convert negative int to unsigned' (the CLI's 'internal error', exit 1)."""
    with PatternTracker() as t:
        t.record_metric("reviews", 2)
        assert t.get_error_metrics(window=1e12)["custom_metrics"]["custom.reviews"]["count"] == 1
    r = run_cli("metrics", "--since", "1e12", env=cli_env(tracker_env))
    assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr


@pytest.mark.parametrize(("value", "tags", "kind", "message"), [
    (math.nan, None, ValueError, "metric value must be a finite number at least 0 and at most 1e+12, got nan"),
    (math.inf, None, ValueError, "metric value must be a finite number at least 0 and at most 1e+12, got inf"),
    (1e300, None, ValueError, "metric value must be a finite number at least 0 and at most 1e+12, got 1e+300"),  # OverflowError
    (-1, None, ValueError, "metric value must be a finite number at least 0 and at most 1e+12, got -1"),
    (True, None, TypeError, "metric value must be a number, got bool"),
    (1, ["team"], TypeError, "tags must be a dict, got list"),  # AttributeError: 'list' object has no attribute 'items'
])
def test_record_metric_refuses_what_a_counter_cannot_hold(tracker_env: Path, value: object, tags: object, kind: type,
                                                          message: str) -> None:
    with PatternTracker() as t:
        with pytest.raises(kind) as err:
            t.record_metric("x", value, tags)  # type: ignore[arg-type]
        assert str(err.value) == message
        assert t.get_error_metrics()["custom_metrics"] == {}


def test_an_empty_config_path_is_refused_as_the_cli_refuses_it(tracker_env: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """PatternTracker(config_path="") ran on the defaults without a word; `--config ""` is a config error."""
    from pattern_tracker import ConfigError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"^config error: cannot read config file {tmp_path}: Is a directory$"):
        PatternTracker(config_path="")
    r = run_cli("--config", "", "config", "show", env=cli_env(tracker_env), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("config error: cannot read config file")
