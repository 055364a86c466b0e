"""The flags of `archive`, `replay` and `query` as a new user types them: numbers checked at parse
time (one usage line naming the flag and the value, exit 2, never a hang or an internal error),
`archive record OUT [--source …]… [PATH…]` in its documented order, an OUT that is a file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.clitools import BIN, cli_env, run_cli, stop, wait_for

FAST_WATCH = {"PATTERN_TRACKER__SOURCES__WATCH__STEP_MS": "10", "PATTERN_TRACKER__SOURCES__WATCH__DEBOUNCE_MS": "10"}


@pytest.fixture
def archive(tmp_path: Path) -> str:
    out = str(tmp_path / "arch")
    made = run_cli("archive", "generate", "--events", "5", "--files", "2", out, env=cli_env(tmp_path / "data"))
    assert made.returncode == 0, made.stderr
    return out


def usage_error(out: subprocess.CompletedProcess[str], command: str, flag: str, says: str) -> None:
    lines = out.stderr.splitlines()
    assert out.returncode == 2 and len(lines) == 1, out
    assert lines[0].startswith(f"pattern-tracker {command}: error: argument {flag}: {says}"), lines[0]


@pytest.mark.parametrize("flag, value, says", [
    ("--speedup", "nan", "must be a finite number greater than 0, got nan"),  # paced nothing: hung until Ctrl-C
    ("--speedup", "inf", "must be a finite number greater than 0, got inf"),
    ("--speedup", "0", "must be a finite number greater than 0, got 0.0"),
    ("--rate", "inf", "must be a finite number greater than 0 and at most 1e+09, got inf"),  # internal error: OverflowError
    ("--rate", "nan", "must be a finite number greater than 0 and at most 1e+09, got nan"),  # did not name the flag
    ("--rate", "1e308", "must be a finite number greater than 0 and at most 1e+09, got 1e+308"),  # overflowed later
    ("--rate", "-1", "must be a finite number greater than 0 and at most 1e+09, got -1.0"),
    ("--rate", "fast", "invalid float value: 'fast'"),
    ("--skip", "-1", "must be at least 0, got -1"),
])
def test_replay_refuses_a_bad_number_at_parse_time(tmp_path: Path, archive: str, flag: str, value: str, says: str) -> None:
    out = run_cli("replay", archive, flag, value, "--sink", "null", env=cli_env(tmp_path / "data"), timeout=20)
    usage_error(out, "replay", flag, says)


def test_replay_takes_the_largest_rate_and_any_positive_speedup(tmp_path: Path, archive: str) -> None:
    out = run_cli("replay", archive, "--rate", "1e9", "--speedup", "1e12", "--sink", "null", "--json",
                  env=cli_env(tmp_path / "data"))
    assert out.returncode == 0 and json.loads(out.stdout)["read"] == 5, out.stderr


@pytest.mark.parametrize("argv, flag, says", [
    (["--events", "0"], "--events", "must be at least 1, got 0"),
    (["--events", "3", "--files", "-1"], "--files", "must be at least 1, got -1"),
    (["--events", "3", "--files", "nan"], "--files", "invalid int value: 'nan'"),
])
def test_archive_generate_refuses_a_bad_number_at_parse_time(tmp_path: Path, argv: list[str], flag: str, says: str) -> None:
    out = run_cli("archive", "generate", *argv, str(tmp_path / "arch"), env=cli_env(tmp_path / "data"))
    usage_error(out, "archive generate", flag, says)
    assert not (tmp_path / "arch").exists()


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_query_limit_below_1_is_a_usage_error(tmp_path: Path, limit: str) -> None:
    """It was "no versions of F", exit 1: as if the file had none."""
    out = run_cli("query", "--file", str(tmp_path / "f.py"), "--limit", limit, env=cli_env(tmp_path / "data"))
    usage_error(out, "query", "--limit", f"must be at least 1, got {limit}")


def test_archive_generate_clamps_files_to_events_and_says_so(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    out = run_cli("archive", "generate", "--events", "5", "--files", "10", str(tmp_path / "arch"), env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("wrote 5 events over 5 files (--files 10 clamped to --events) to "), out.stdout
    info = json.loads(run_cli("archive", "info", str(tmp_path / "arch"), "--json", env=env).stdout)
    assert info["files"] == 5 and info["meta"]["files"] == 5


@pytest.mark.parametrize("action", [["generate", "--events", "5"], ["record", "--source", "stdin"]])
def test_archive_out_that_is_a_file_is_one_line_naming_it(tmp_path: Path, action: list[str]) -> None:
    """It was "cannot create data directory …: File exists", exit 1."""
    out_file = tmp_path / "out"
    out_file.write_text("not an archive\n")
    out = run_cli("archive", *action, str(out_file), env=cli_env(tmp_path / "data"), input=b"")
    assert out.returncode == 2 and out.stderr.splitlines() == [
        f"pattern-tracker: OUT {out_file} exists and is not a directory; an archive is a directory: choose another path"
    ], out.stderr
    assert out_file.read_text() == "not an archive\n"


def test_archive_record_without_arguments_names_only_out(tmp_path: Path) -> None:
    out = run_cli("archive", "record", env=cli_env(tmp_path / "data"))
    assert out.returncode == 2 and out.stderr.splitlines() == [
        "pattern-tracker archive record: error: the following arguments are required: OUT (see --help)"], out.stderr


def test_archive_record_takes_paths_after_its_options(tmp_path: Path) -> None:
    """The documented `archive record OUT --source S PATH`: PATH after an option was "unrecognized"."""
    env = cli_env(tmp_path / "data")
    (tmp_path / "src").mkdir()
    for i, argv in enumerate((["--source", "stdin", str(tmp_path / "src")], [str(tmp_path / "src"), "--source", "stdin"])):
        line = json.dumps({"file_path": "/p/a.py", "code": f"print({i})"}).encode() + b"\n"
        out = run_cli("archive", "record", str(tmp_path / "rec"), *argv, env=env, input=line)
        assert out.returncode == 0, (argv, out.stderr)
    assert json.loads(run_cli("archive", "info", str(tmp_path / "rec"), "--json", env=env).stdout)["events"] == 2


def _record_watch(tmp_path: Path, name: str, *args: str) -> list[str]:
    """`archive record OUT ARGS…` until it has recorded one event; the recorded file paths."""
    out = tmp_path / name
    env = cli_env(tmp_path / "data", **FAST_WATCH)
    recorder = subprocess.Popen([str(BIN), "archive", "record", str(out), *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def recorded() -> dict | None:
            if recorder.poll() is not None:
                raise AssertionError(f"archive record exited {recorder.returncode}: {recorder.stderr.read().decode()}")
            info = run_cli("archive", "info", str(out), "--json", env=env)
            return json.loads(info.stdout) if info.returncode == 0 and json.loads(info.stdout)["events"] else None

        wait_for(recorded, timeout=15, what="an event recorded")
    finally:
        assert stop(recorder) == 0
    from pattern_tracker.model.archive import Archive

    archive = Archive(str(out))
    try:
        return [ev.file_path for chunk in archive.chunks(100) for ev in chunk]
    finally:
        archive.close()


def test_archive_record_watches_the_paths_given_after_source_else_the_configured_ones(tmp_path: Path) -> None:
    given, configured = tmp_path / "given", tmp_path / "configured"
    for tree in (given, configured):
        tree.mkdir()
        (tree / "app.py").write_text(f"NAME = {tree.name!r}\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"sources:\n  watch:\n    paths: [{json.dumps(str(configured))}]\n")
    paths = _record_watch(tmp_path, "rec1", "--source", "watch", str(given), "--config", str(config))
    assert paths and all(p.startswith(str(given.resolve())) for p in paths), paths
    paths = _record_watch(tmp_path, "rec2", "--source", "watch", "--config", str(config))  # no PATH: sources.watch.paths
    assert paths and all(p.startswith(str(configured.resolve())) for p in paths), paths


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--source", "stdin", "somedir"], "PATH somedir is for the watch source"),
    (["query", "--descendants", "--file", "/p/a.py"], "--descendants goes with a PATTERN_ID, not --file"),
])
def test_an_argument_the_command_would_ignore_is_a_usage_error(tmp_path: Path, argv: list[str], says: str) -> None:
    """Both were ignored without a word: a run of stdin alone watched nothing of PATH, and
    `query --file` listed the file's versions whatever --descendants said."""
    out = run_cli(*argv, env=cli_env(tmp_path / "data"), input=b"")
    lines = out.stderr.splitlines()
    assert out.returncode == 2 and len(lines) == 1 and says in lines[0], out


@pytest.mark.parametrize(("argv", "flag"), [
    (["dlq", "list", "--limit", "0"], "--limit"),
    (["status", "--interval", "nan"], "--interval"),
    (["metrics", "--since", "inf"], "--since"),
])
def test_the_other_commands_numbers_are_checked_at_parse_time_too(tmp_path: Path, argv: list[str], flag: str) -> None:
    """dlq list, status and metrics checked theirs after parsing, each its own way ('pattern-tracker:
    --limit must be …'): now the same usage line as replay's, naming the command and the flag."""
    usage_error(run_cli(*argv, env=cli_env(tmp_path / "data")), " ".join(argv[:-2]), flag, "must be ")


def test_a_commands_paths_may_follow_its_options(tmp_path: Path) -> None:
    """Every command's own parser takes its positionals before, between and after its options (as
    `archive record` does): `run A --source stdin B` read B as an unrecognized argument; now both are
    PATHs, and (stdin alone) refused as PATHs for a run without the watch source."""
    out = run_cli("run", "a", "--source", "stdin", "b", env=cli_env(tmp_path / "data"), input=b"")
    lines = out.stderr.splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "PATH a is for the watch source" in lines[0], out


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"rate": float("nan")}, "rate must be a finite number greater than 0 and at most 1e+09, got nan"),
    ({"rate": float("inf")}, "rate must be a finite number greater than 0 and at most 1e+09, got inf"),
    ({"rate": 0}, "rate must be a finite number greater than 0"),
    ({"speedup": float("nan")}, "speedup must be a finite number greater than 0, got nan"),
    ({"speedup": -2.0}, "speedup must be a finite number greater than 0, got -2.0"),
])
def test_replay_source_from_python_refuses_what_the_flags_refuse(kwargs: dict, says: str) -> None:
    """`replay --speedup nan` is a usage error; replay_source(archive, speedup=nan) from Python paced
    nothing (every comparison with nan is false, so `speedup <= 0` let it through). One rule for both."""
    from pattern_tracker.sources.replay import replay_source

    with pytest.raises(ValueError, match=f"^{says.replace('+', '[+]')}"):
        replay_source(None, **kwargs)  # type: ignore[arg-type]  # refused before the archive is used


@pytest.mark.parametrize(("argv", "missing"), [
    (["cache", "quarantine", "export"], "DIR"),
    (["archive", "record"], "OUT"),
])
def test_an_optional_list_is_not_named_among_the_required(tmp_path: Path, argv: list[str], missing: str) -> None:
    """argparse counts a nargs="*" positional without a default as required: 'the following
    arguments are required: DIR, SEQ' for `cache quarantine export`, whose SEQ… may be left out."""
    out = run_cli(*argv, env=cli_env(tmp_path / "data"))
    assert out.returncode == 2 and out.stderr == (f"pattern-tracker {' '.join(argv)}: error: the following arguments "
                                                  f"are required: {missing} (see --help)\n"), out.stderr
