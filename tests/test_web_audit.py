"""What docs/web-ui.md and docs/operations.md promise of every ``/ui`` answer, error answers
included, on the real servers: ``pattern-tracker serve`` (the explorer) and
``pattern-tracker dashboard`` (the status server), each a subprocess on 127.0.0.1."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from pattern_tracker.web.assets import SECURITY_HEADERS

from tests.clitools import cli_env, dashboard, serve


def _answer(url: str, method: str = "GET") -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def _check(base: str) -> None:
    """Every /ui answer carries the security headers, error answers too."""
    found = _answer(base + "/ui/static/common.css")
    assert found[0] == 200 and found[1]["Cache-Control"] == "max-age=300"
    for path, method, status in (("/ui/no-such-page", "GET", 404), ("/ui/", "POST", 405)):
        code, headers = _answer(base + path, method)
        assert code == status, (path, code)
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value, (path, name, headers)


def test_error_answers_under_ui_carry_the_security_headers(tmp_path: Path) -> None:
    """The dashboard's 404/405 went out with none of them: a raised HTTPException skipped the
    middleware's headers (serve's own error middleware had turned them into answers first)."""
    env = cli_env(tmp_path / "data")
    with dashboard(env, "--port", "0") as (_, url):
        _check(url.removesuffix("/ui/"))
    with serve(tmp_path / "serve-data") as url:
        _check(url)
