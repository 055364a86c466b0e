"""A real PostgreSQL server for the tests: initdb in a temp dir, 127.0.0.1 on a free port, torn down after.

``find_bindir()`` finds the server binaries (``postgres`` / ``initdb`` on PATH, else the newest
``/usr/lib/postgresql/*/bin``); where there are none the tests skip with one line saying how to
install them (``.ci/run`` installs Debian's ``postgresql`` itself). PostgreSQL refuses to run as
root, and CI runs as root: then initdb and the server run as ``nobody``, which owns the temp dir.

Tuned for tests: fsync and full_page_writes off (a commit still reaches the OS before it answers). Password
authentication everywhere (scram-sha-256), with a ``tracker`` role of its own random password, so
the tests exercise the password's masking. :class:`PgServer` can also stop, start, restart and
``kill`` the server (same port, same data), or ``pause`` and ``resume`` it (a server that stops
answering): the "database restarting / unreachable / hung" tests.

Fixtures: ``pg_server`` (one per session) and ``pg_url`` (a fresh database per test, URL with
the ``tracker`` password).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.clitools import free_port

__all__ = ["INSTALL_HINT", "PgServer", "find_bindir", "pg_server", "pg_url"]

INSTALL_HINT = "PostgreSQL server not found: apt-get install postgresql"

SUPERUSER = "postgres"
ROLE = "tracker"

# Speed over durability against an OS crash (the data dir is thrown away after the session), but
# synchronous_commit stays on: a commit writes its WAL to the OS before it answers, so killing the
# server (stop("immediate"), kill()) loses nothing committed, as with a real server.
_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def find_bindir() -> Path | None:
    """The directory of ``postgres`` and ``initdb``: PATH first, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")
                  if os.access(os.path.join(p, "postgres"), os.X_OK) and os.access(os.path.join(p, "initdb"), os.X_OK)]

    def version(p: Path) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in p.parent.name.split("."))
        except ValueError:
            return (0,)

    return max(candidates, key=version) if candidates else None


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class PgServer:
    """One PostgreSQL cluster in a temp dir, listening on 127.0.0.1:``port``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="pt-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.port = free_port()
        self.superuser_password = secrets.token_urlsafe(16)
        self.password = secrets.token_urlsafe(16)  # the tracker role's
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_nobody = os.geteuid() == 0
        self._databases = 0
        self.started_in = 0.0  # seconds initdb + first start took

    # -- processes ------------------------------------------------------------------------------

    def _spawn_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}}
        if self._as_nobody:
            kw.update(user="nobody", group="nogroup", extra_groups=[])
        return kw

    def init(self) -> None:
        t0 = time.monotonic()
        self.sockets.mkdir()
        pwfile = self.root / "pw"
        pwfile.write_text(self.superuser_password + "\n")
        if self._as_nobody:
            for p in (self.root, self.sockets, pwfile):
                os.chown(p, 65534, 65534)
        result = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile),
             "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            check=False, capture_output=True, **self._spawn_kwargs(),
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.decode(errors='replace')[-400:]}")
        self.start()
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{self.password}'")
        self.started_in = time.monotonic() - t0

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (after ``init``, ``stop`` or ``kill``) on the same port and data dir."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        args = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sockets}"]
        for name, value in _SETTINGS.items():
            args += ["-c", f"{name}={value}"]
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True, **self._spawn_kwargs())
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:  # wait on the event: the server accepting a login
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with self.admin(connect_timeout=2):
                    return
            except Exception:  # noqa: BLE001 - not accepting yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not accept connections in {timeout}s: {self.log_tail()}")
                time.sleep(0.02)

    def stop(self, mode: str = "immediate", timeout: float = 15.0) -> None:
        """Stop the server: ``immediate`` (SIGQUIT, like a crash), ``fast`` (SIGINT) or ``smart`` (SIGTERM)."""
        sig = {"immediate": signal.SIGQUIT, "fast": signal.SIGINT, "smart": signal.SIGTERM}[mode]
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend of it: the server vanishes mid-whatever, as in a
        crash (backends are group leaders of their own, so each is killed by pid; the postmaster is
        stopped first so it forks no new one meanwhile)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGSTOP)
        children = _children(proc.pid)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.01)  # reparented to init, which reaps them

    def pause(self) -> None:
        """SIGSTOP the server and its backends: it holds connections but answers nothing (a network
        partition, a hung host). :meth:`resume` lets it go on."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self) -> None:
        """Start it again if a test stopped or killed it."""
        if not self.running:
            self.start()

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 600) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- clients --------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", user: str = ROLE, password: str | None = None, **params: str) -> str:
        """A libpq URL to ``dbname`` (``user`` tracker with its password unless told otherwise)."""
        if password is None:
            password = self.password if user == ROLE else self.superuser_password if user == SUPERUSER else ""
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")

    @contextlib.contextmanager
    def admin(self, dbname: str = "postgres", connect_timeout: int = 5) -> Iterator[Any]:
        """A superuser connection (autocommit)."""
        import psycopg

        with psycopg.connect(self.url(dbname, SUPERUSER), autocommit=True, connect_timeout=connect_timeout) as conn:
            yield conn

    def create_database(self) -> str:
        """A fresh, empty database owned by the tracker role; returns its name."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {ROLE} TEMPLATE template0")
        return name


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    server = PgServer(bindir)
    try:
        server.init()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database on the session's server; the URL holds the tracker role's password."""
    pg_server.ensure_running()  # a test may have stopped or killed it
    return pg_server.url(pg_server.create_database())
