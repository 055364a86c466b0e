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
