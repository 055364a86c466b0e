"""Every command that draws on a terminal, run on a real pseudo-terminal, ended with Ctrl-C.

The live displays (the status line of ``run``/``watch``, the progress bars of ``replay`` and
``drain``, the ``status --watch`` screen) only exist when a stream is a tty, so piped test
runs never execute them: a broken ``render`` once made every interactive ``run`` end in an
internal error. Here the console script gets a pty as its controlling terminal (its own
session), Ctrl-C is the byte 0x03 written to the master (the line discipline sends SIGINT to
the foreground group, as for a person), and every step waits for what appears on the screen.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.clitools import BIN, cli_env, free_port, run_cli, serve

FAST_WATCH = {"PATTERN_TRACKER__SOURCES__WATCH__STEP_MS": "10", "PATTERN_TRACKER__SOURCES__WATCH__DEBOUNCE_MS": "10"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CTRL_C = b"\x03"


def _take_terminal() -> None:
    """In the child, after setsid: the pty on fd 0 becomes the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """One command on a pty. ``text`` is the screen output so far, ANSI escapes removed and each
    carriage return made a line break (every redraw of a status line is a line of its own)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        env = {**env, "TERM": "xterm"}
        self.proc = subprocess.Popen([str(BIN), *args], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)
        self.fd = master
        self.raw = b""
        self.eof = False

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r\n", "\n").replace("\r", "\n")

    def mark(self) -> int:
        """A position in ``text``: ``expect(..., after=mark)`` only looks at what came later."""
        return len(self.text)

    def _read(self, timeout: float) -> None:
        if self.eof:
            time.sleep(min(timeout, 0.05))
            return
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return
        try:
            chunk = os.read(self.fd, 65536)
        except OSError as exc:  # EIO: every holder of the slave side is gone
            if exc.errno != errno.EIO:
                raise
            chunk = b""
        if chunk:
            self.raw += chunk
        else:
            self.eof = True

    def expect(self, pattern: str, timeout: float = 15.0, after: int = 0, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``pattern`` appears ``count`` times after ``after``; the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = list(regex.finditer(self.text[after:]))
            if len(found) >= count:
                return found
            if self.eof and self.proc.poll() is not None:
                raise AssertionError(f"exit {self.proc.returncode} before {pattern!r} (x{count}) appeared:\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} (x{count}) did not appear within {timeout}s:\n{self.text}")
            self._read(deadline - time.monotonic())

    def ctrl_c(self) -> None:
        os.write(self.fd, CTRL_C)

    def wait(self, timeout: float = 20.0) -> int:
        """Read the screen to the end and return the exit code."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        try:
            return self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout}s later:\n{self.text}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.fd)


@contextmanager
def terminal(*args: str, env: dict[str, str], cwd: Path | None = None) -> Iterator[Terminal]:
    term = Terminal(list(args), env, cwd)
    try:
        yield term
    finally:
        term.close()


def assert_clean(text: str) -> None:
    assert "Traceback" not in text and "internal error" not in text, text


def _status_line(delivered: int) -> str:
    return rf"pattern-tracker → .*\| read \d+ \| delivered {delivered} \| dup \d+ \| pending \d+ \| dead 0 \| [\d.]+ ev/s"


def _live_edit_then_ctrl_c(term: Terminal, target: Path) -> str:
    """The status line shows the initial scan delivered, then the count after a real edit; Ctrl-C."""
    term.expect(_status_line(1))
    mark = term.mark()
    target.write_text("def f():\n    return 2\n")
    term.expect(_status_line(2), after=mark)
    term.ctrl_c()
    code = term.wait()
    text = term.text
    assert code == 0, text
    assert re.search(r"done: read 2, unchanged 0, delivered 2, already there 0, dead-lettered 0, left in spool 0", text), text
    assert_clean(text)
    assert not re.search(r"ev/s *\d{4}-\d\d-\d\d", text), text  # a log line is never glued to the status line
    return text


def test_run_on_a_terminal_shows_the_live_status_line_and_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    target = proj / "app.py"
    target.write_text("def f():\n    return 1\n")
    # Default config (sources: watch), delivering to the embedded store of the data directory.
    with terminal("run", str(proj), env=cli_env(tmp_path / "data", **FAST_WATCH)) as term:
        text = _live_edit_then_ctrl_c(term, target)
    assert "pending 0 |" in text  # the spool's size, drained by the deliveries


def test_watch_on_a_terminal_to_serve_shows_the_status_line_and_ctrl_c_ends_it_cleanly(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    target = proj / "app.py"
    target.write_text("def f():\n    return 1\n")
    with serve(tmp_path / "service") as url:
        env = cli_env(tmp_path / "client", PATTERN_TRACKING_API_URL=url, **FAST_WATCH)
        with terminal("watch", str(proj), env=env) as term:
            text = _live_edit_then_ctrl_c(term, target)
    assert f"→ {url}" in text


def _bar(label: str, total: int) -> str:
    return rf"{label} \[[#-]+\]\s+(\d+)/{total}\s+\d+%"


def test_replay_on_a_terminal_draws_its_bar_and_ctrl_c_ends_it_with_the_documented_code(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "data")
    archive = tmp_path / "arch"
    assert run_cli("archive", "generate", "--events", "300", "--files", "10", str(archive), env=env).returncode == 0
    # Paced so it is still running when interrupted; the bar is redrawn as events are sent.
    with terminal("replay", "--rate", "100", str(archive), env=env) as term:
        seen = term.expect(_bar("replay", 300), count=2)
        assert int(seen[-1].group(1)) > int(seen[0].group(1)), term.text
        term.ctrl_c()
        code = term.wait()
        text = term.text
    m = re.search(r"replay: read (\d+) of 300, delivered (\d+), already there 0, dead-lettered 0, left in spool 0", text)
    assert m and 0 < int(m.group(1)) < 300 and m.group(1) == m.group(2), text
    assert code == 130, text  # docs/cli.md#exit-codes: interrupted before the archive's end
    assert_clean(text)
    # Uninterrupted, the bar ends full and the exit is 0; the events read before are already there.
    with terminal("replay", str(archive), env=env) as term:
        code = term.wait()
        text = term.text
    assert code == 0, text
    assert re.search(r"replay \[#+\] 300/300 100%", text), text
    assert re.search(r"replay: read 300 of 300, delivered \d+, already there \d+, dead-lettered 0, left in spool 0", text), text
    assert_clean(text)


def _fill_spool(data_dir: Path, n: int) -> None:
    """``n`` events in the spool, as a source leaves them when the service is down."""
    from pattern_tracker.core.capture import Change
    from pattern_tracker.state.ingest import Ingest
    from pattern_tracker.core.store import Store

    store = Store.open(data_dir)
    try:
        now = time.time()
        Ingest(store).accept_changes([Change(path=f"/proj/f{i}.py", code=f"x = {i}\n", occurred_at=now) for i in range(n)],
                                     "stdin", now)
    finally:
        store.close()


def test_drain_on_a_terminal_draws_its_bar_and_ctrl_c_ends_it_with_the_documented_code(tmp_path: Path, closed_port: int) -> None:
    data = tmp_path / "data"
    _fill_spool(data, 30)
    # The service is down: --until-empty keeps trying, the bar keeps being redrawn (0/30).
    down = cli_env(data, PATTERN_TRACKING_API_URL=f"http://127.0.0.1:{closed_port}",
                   PATTERN_TRACKER__PATTERN_TRACKING__SHUTDOWN_TIMEOUT="1")  # no waiting out a retry's backoff
    with terminal("drain", "--until-empty", env=down) as term:
        term.expect(_bar("drain", 30), count=3)
        term.ctrl_c()
        code = term.wait()
        text = term.text
    assert code == 4, text  # docs/cli.md#exit-codes: events remain in the spool, the drain was interrupted
    assert "interrupted: 30 event(s) left in the spool" in text, text
    assert "drain: delivered 0, already there 0, dead-lettered 0, left in spool 30" in text, text
    assert_clean(text)
    # The service is back (and the circuit closed again by an operator): the bar fills, exit 0.
    assert run_cli("circuit", "reset", env=down).returncode == 0
    with serve(tmp_path / "service") as url:
        with terminal("drain", env=cli_env(data, PATTERN_TRACKING_API_URL=url)) as term:
            code = term.wait()
            text = term.text
    assert code == 0, text
    assert re.search(r"drain \[#+\] 30/30 100%", text), text
    assert "drain: delivered 30, already there 0, dead-lettered 0, left in spool 0" in text, text
    assert_clean(text)


def test_status_watch_on_a_terminal_redraws_and_ctrl_c_restores_the_terminal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _fill_spool(data, 3)
    with terminal("status", "--watch", "--interval", "0.1", env=cli_env(data)) as term:
        term.expect(r"pattern-tracker status .*\n(?:.*\n)*?\s+spool:\s+3 / 1000 events", count=2)
        term.ctrl_c()
        code = term.wait()
        raw = term.raw.decode("utf-8", "replace")
        text = term.text
    assert code == 0, text
    assert raw.count("\x1b[H\x1b[2J") >= 2  # redrawn in place, at least twice
    assert raw.startswith("\x1b[?25l") and raw.rstrip().endswith("\x1b[?25h"), raw[-200:]  # cursor hidden, then restored
    assert_clean(text)


def test_a_log_record_clears_the_progress_bar_first_and_finish_stops_that() -> None:
    """A bar redrawn in place has no newline: a log line written meanwhile must start on a line of its own."""
    import io
    import logging

    from pattern_tracker.cli.progress import Progress

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    ours = logging.getLogger("pattern_tracker")
    ours.addHandler(handler)
    try:
        bar = Progress(10, "drain", stream=buf, enabled=True)
        bar.update(3)
        logging.getLogger("pattern_tracker.runtime").warning("3 event(s) kept in the spool for later")
        bar.update(4)
        bar.finish()
        assert handler.filters == []
    finally:
        ours.removeHandler(handler)
    lines = buf.getvalue().replace("\r", "\n").splitlines()
    assert "3 event(s) kept in the spool for later" in lines, lines
    assert any(re.fullmatch(r"drain \[#+-+\]\s+4/10 .*", line) for line in lines), lines  # drawn again after it


@pytest.fixture
def closed_port() -> int:
    return free_port()
