"""`serve --store postgresql://…` as a user meets it (real subprocesses, a real PostgreSQL): the
option, the config key and env var, the password never shown, a database down at start or while
serving (503 with Retry-After, /health naming the database, `health` saying why, recovery)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pattern_tracker.model.api import PREFIX
from pattern_tracker.model.events import build_event, json_encoder, to_track_request
from tests.clitools import BIN, cli_env, run_cli, serve, stop, wait_for
from tests.pgserver import PgServer, free_port

FAST_STORE = {"PATTERN_TRACKER__SERVE__CONNECT_TIMEOUT": "1", "PATTERN_TRACKER__SERVE__STATEMENT_TIMEOUT": "5"}


def _post(base: str, n: int) -> tuple[int, dict[str, str], float]:
    ev = build_event(file_path=f"/s/f{n}.py", code=f"x = {n}\n", version=1, parent_pattern_id=None, source="hook",
                     occurred_at=float(n))
    req = urllib.request.Request(f"{base}{PREFIX}/lineage/track", data=json_encoder.encode(to_track_request(ev)),
                                 headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), time.monotonic() - t0
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), time.monotonic() - t0


def _get_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as exc:
        return json.load(exc)


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_store_that_is_no_postgresql_url_is_one_line_and_exit_2(tmp_path: Path, how: str) -> None:
    bad = "mysql://tracker:hunter2secret@db/lineage"
    if how == "option":
        r = run_cli("serve", "--port", "0", "--store", bad, env=cli_env(tmp_path))
        named = "--store"
    else:
        r = run_cli("serve", "--port", "0", env=cli_env(tmp_path, PATTERN_TRACKER_SERVE_STORE=bad))
        named = "serve.store"
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and named in r.stderr and "postgresql://" in r.stderr
    assert "hunter2secret" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_an_embedded_store_that_fails_to_open_is_not_blamed_on_serve_store(tmp_path: Path) -> None:
    """Without a URL, an error opening the embedded store is the store's (one line, exit 1), never
    a usage error naming serve.store (it once said "serve.store: subsection not found")."""
    from pattern_tracker.core.store import Store

    store = Store.open(tmp_path)
    bad = store.db("lineage_files")  # a layout-1 file entry whose value is no node key: unreadable
    store.write(lambda txn: txn.put(b"/src/a.py\0" + (1).to_bytes(8, "big"), b"no node key", db=bad))
    store.close()
    r = run_cli("serve", "--port", "0", env=cli_env(tmp_path), timeout=60)
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("pattern-tracker:")]
    assert len(lines) == 1 and "serve.store" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_config_show_masks_the_store_password(tmp_path: Path) -> None:
    url = "postgresql://tracker:hunter2secret@db.internal:5432/lineage?sslmode=require"
    r = run_cli("config", "show", env=cli_env(tmp_path, PATTERN_TRACKER_SERVE_STORE=url))
    assert r.returncode == 0
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("serve.store"))
    assert "postgresql://tracker:***@db.internal:5432/lineage?sslmode=require" in line
    assert "env PATTERN_TRACKER_SERVE_STORE" in line and "hunter2secret" not in r.stdout


def test_database_unreachable_at_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"postgresql://tracker:hunter2secret@127.0.0.1:{free_port()}/lineage"  # nothing listens there
    r = run_cli("serve", "--port", "0", "--store", url, env=cli_env(tmp_path, **FAST_STORE), timeout=60)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "cannot open the lineage store postgresql://tracker:***@127.0.0.1:" in lines[0], lines[0]
    assert "hunter2secret" not in r.stderr


def test_start_line_names_the_store_without_its_password(pg_url: str, pg_server: PgServer, tmp_path: Path) -> None:
    proc = subprocess.Popen([str(BIN), "serve", "--port", "0", "--store", pg_url], env=cli_env(tmp_path),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        while not lines or not lines[-1].startswith("serving"):  # after the schema's migration line
            line = proc.stderr.readline().decode()
            assert line, f"serve ended: {lines}"
            lines.append(line)
    finally:
        stop(proc)
    assert re.fullmatch(r"serving Phase 4 API on http://127\.0\.0\.1:\d+ \(store: postgresql://tracker:\*\*\*@"
                        rf"127\.0\.0\.1:{pg_server.port}/\w+\)\n", lines[-1]), lines
    assert pg_server.password not in "".join(lines)


def test_database_down_while_serving_is_503_then_recovers_by_itself(pg_url: str, pg_server: PgServer,
                                                                     tmp_path: Path) -> None:
    with serve(tmp_path / "serve", "--store", pg_url, env_extra=FAST_STORE) as base:
        assert _post(base, 1)[0] == 200
        pg_server.kill()
        try:
            status, headers, took = _post(base, 2)
            assert status == 503 and int(headers["Retry-After"]) >= 1, (status, headers)
            assert took < 10, f"a request waited {took:.1f}s on a dead database"
            root = _get_json(f"{base}/health")
            api = _get_json(f"{base}{PREFIX}/health")
            for body in (root, api):
                assert body["status"] == "degraded"
                assert body["components"]["lineage_tracker"].startswith("database_unavailable"), body
                assert body["components"]["database"].startswith("postgresql: "), body
                assert body["components"]["database"] != "postgresql: operational"
                # The cause, not just the pool's "no connection in time": the server is gone.
                assert "refused" in body["components"]["database"].lower(), body
            tracker = tmp_path / "tracker"
            health = run_cli("health", env=cli_env(tracker, PATTERN_TRACKING_API_URL=base), timeout=60)
            assert health.returncode in (1, 2), health.stdout + health.stderr
            service_line = next(ln for ln in health.stdout.splitlines() if ln.strip().startswith("service"))
            assert "unavailable" in service_line and "database_unavailable" in service_line, health.stdout
            assert pg_server.password not in health.stdout + health.stderr
        finally:
            pg_server.start()
        wait_for(lambda: _post(base, 3)[0] == 200, timeout=30, interval=0.2, what="serve recovering by itself")
        root = _get_json(f"{base}/health")
        assert root["status"] == "healthy"
        assert root["components"] == {"lineage_tracker": "operational", "database": "postgresql: operational"}


@pytest.mark.parametrize(("url", "ok"), [
    ("postgresql://tracker:pw@db:5432/lineage?sslmode=require", True),
    ("postgres://tracker@db/lineage", True),
    ("postgresql://tracker:pw@db1:5432,db2:5433/lineage?target_session_attrs=read-write", True),  # libpq's several hosts
    ("postgresql:///lineage?host=/var/run/postgresql", True),
    ("postgresql://db:99999/lineage", False),
    ("postgresql://[::1/lineage", False),
    ("db.internal:5432/lineage", False),
    ("lineage", False),
])
def test_which_store_urls_the_configuration_takes(url: str, ok: bool) -> None:
    from pattern_tracker.settings.config import ConfigError, load_config

    if ok:
        assert load_config(env={"PATTERN_TRACKER_SERVE_STORE": url}).config.serve.store == url
    else:
        with pytest.raises(ConfigError, match=r"serve\.store = .*expected a postgresql://"):
            load_config(env={"PATTERN_TRACKER_SERVE_STORE": url})
