"""The lineage explorer in real headless Chromium, against a real `serve` fed by a real `run`.

One `serve` (and the `run` that watched a project into it) is shared by the module; every test
gets a fresh browser page, and the `page` fixture fails a test whose page logs a console error,
throws, or opens a dialog (an `alert` would be a script we let in).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from pattern_tracker.model.api import PREFIX

from tests.browser import save_screenshot
from tests.clitools import BIN, cli_env, serve, stop, wait_for

FAST_WATCH = {"PATTERN_TRACKER__SOURCES__WATCH__STEP_MS": "10", "PATTERN_TRACKER__SOURCES__WATCH__DEBOUNCE_MS": "10"}
HOSTILE_NAME = "<img src=x onerror=alert(1)>.py"
HOSTILE_CODE = "</script><script>alert(1)</script>\n"
VERSIONS = [
    "def greet(name):\n    return 'hello ' + name\n",
    "def greet(name):\n    return 'hello ' + name\n\n\ndef part(name):\n    return name.title()\n",
    "def greet(name):\n    return f'hello {name}!'\n\n\ndef part(name):\n    return name.title()\n",
]
TOKEN = "t0ken-for-the-browser-test"


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw and "json" in resp.headers.get("Content-Type", "") else raw
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw and "json" in (exc.headers.get("Content-Type") or "") else exc.headers


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def versions_of(url: str, path: Path) -> list[dict[str, Any]]:
    return http("GET", f"{url}/standin/v1/file?" + urllib.parse.urlencode({"path": str(path)}))[1]["data"]["versions"]


def track(url: str, event_type: str, pid: str, parents: list[str], headers: dict[str, str] | None = None) -> None:
    status, body = http("POST", url + PREFIX + "/lineage/track", {
        "event_type": event_type, "pattern_id": pid, "pattern_version": "1", "pattern_name": f"{pid}.py",
        "file_path": f"/lib/{pid}.py", "language": "python", "parent_pattern_ids": parents,
        "pattern_data": {"code": f"# {pid}\n"}}, headers)
    assert status == 200, body


class Site:
    def __init__(self, url: str, app: Path, hostile: Path) -> None:
        self.url = url
        self.app = app
        self.hostile = hostile

    def file_url(self, path: Path) -> str:
        return f"{self.url}/ui/file?" + urllib.parse.urlencode({"path": str(path)})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`serve`, and a `run` that watched three edits of app.py and the hostile file into it; then a
    fork and a merge posted to its Phase 4 API, and 60 more files (three pages)."""
    root = tmp_path_factory.mktemp("explorer")
    proj = Path(os.path.realpath(root / "proj"))
    proj.mkdir()
    app = proj / "app.py"
    hostile = proj / HOSTILE_NAME
    with ExitStack() as stack:
        url = stack.enter_context(serve(root / "service"))
        app.write_text(VERSIONS[0])
        runner = subprocess.Popen([str(BIN), "run", str(proj)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  env=cli_env(root / "client", PATTERN_TRACKING_API_URL=url, **FAST_WATCH))
        try:
            wait_for(lambda: len(versions_of(url, app)) == 1, timeout=20, what="app.py v1 delivered")
            for n, code in enumerate(VERSIONS[1:], start=2):
                app.write_text(code)
                wait_for(lambda n=n: len(versions_of(url, app)) == n, timeout=15, what=f"app.py v{n} delivered")
            hostile.write_text(HOSTILE_CODE)
            wait_for(lambda: len(versions_of(url, hostile)) == 1, timeout=15, what="the hostile file delivered")
        finally:
            assert stop(runner) == 0
        track(url, "pattern_created", "root", [])
        track(url, "pattern_modified", "main", ["root"])
        track(url, "pattern_forked", "fork", ["root"])
        track(url, "pattern_merged", "merged", ["main", "fork"])
        languages = [(".py", "python"), (".ts", "typescript"), (".go", "go"), (".md", "markdown")]
        batch = [{"event_type": "pattern_created", "pattern_id": f"bulk{i:02d}", "pattern_version": "1",
                  "file_path": f"/srv/shop/{('api', 'web', 'jobs')[i % 3]}/module_{i:02d}{languages[i % 4][0]}",
                  "language": languages[i % 4][1], "tool_name": ("Edit", "Write", "MultiEdit")[i // 3 % 3],
                  "pattern_data": {"code": f"x = {i}\n", "session_id": f"session-{i % 5:02d}",
                                   "occurred_at": time.time() - 600 * i}} for i in range(60)]
        assert http("POST", url + PREFIX + "/lineage/track/batch", {"events": batch})[0] == 200
        yield Site(url, app, hostile)


def page_load_ms(pg: Any) -> float:
    return float(pg.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))


def test_files_page_lists_pages_and_filters(site: Site, page: Any) -> None:
    page.goto(site.url + "/")
    assert page.url == site.url + "/ui/"
    rows = page.locator("#files tbody tr")
    wait_for(lambda: rows.count() == 50, what="a first page of 50 files")
    assert page.locator("#next").is_enabled() and page.locator("#prev").is_disabled()
    first = rows.first.locator("td").first.inner_text()
    page.locator("#next").click()
    wait_for(lambda: rows.first.locator("td").first.inner_text() != first, what="the second page")
    assert page.locator("#prev").is_enabled() and "after=" in page.url
    page.locator("#prev").click()
    wait_for(lambda: rows.first.locator("td").first.inner_text() == first, what="back on the first page")

    page.get_by_label("Filter by path").fill("APP.PY")  # a labelled control; the filter ignores case
    page.keyboard.press("Enter")
    wait_for(lambda: rows.count() == 1, what="the filter's one match")
    cells = rows.first.locator("td")
    assert cells.nth(0).inner_text() == str(site.app)
    assert (cells.nth(1).inner_text(), cells.nth(2).inner_text()) == ("python", "3")
    assert cells.nth(5).inner_text() == "—"  # watched, not written by a tool
    page.get_by_label("Filter by path").fill("")
    page.keyboard.press("Enter")
    wait_for(lambda: rows.count() == 50, what="the unfiltered first page again")
    save_screenshot(page, "explorer-files")


def test_file_page_shows_the_versions_code_and_diff(site: Site, page: Any) -> None:
    page.goto(site.file_url(site.app))
    items = page.locator("#timeline li")
    wait_for(lambda: items.count() == 3, what="three versions on the timeline")
    assert page.locator("#timeline .g").all_inner_texts() == ["1", "2", "3"]
    assert page.locator("#timeline .v").all_inner_texts() == ["1", "2", "3"]
    # The default diff: v2 -> v3, the changed line removed and added.
    assert page.get_by_label("From version").input_value() == "1" and page.get_by_label("to version").input_value() == "2"
    removed, added = page.locator("#diff tr.del td.line"), page.locator("#diff tr.add td.line")
    wait_for(lambda: removed.count() == 1 and added.count() == 1, what="one line removed, one added")
    assert removed.inner_text() == "    return 'hello ' + name"
    assert added.inner_text() == "    return f'hello {name}!'"
    # The code of the newest version, highlighted (highlight.js's spans), its text intact.
    code = page.locator("#code-box code")
    wait_for(lambda: code.locator("span.hljs-keyword").count() > 0, what="highlighted code")
    assert code.text_content() == VERSIONS[2]
    save_screenshot(page, "explorer-file")
    # Any two versions: v1 -> v3 by keyboard-usable selects.
    page.get_by_label("From version").select_option("0")
    wait_for(lambda: added.count() == 5, what="v1 -> v3: five lines added")
    assert removed.count() == 1 and "from=" in page.url
    page.get_by_label("Version", exact=True).select_option("0")
    wait_for(lambda: code.text_content() == VERSIONS[0], what="v1's code")
    page.get_by_label("Version", exact=True).select_option("2")
    wait_for(lambda: code.text_content() == VERSIONS[2], what="v3's code again")


def test_pattern_page_draws_a_fork_and_a_merge_as_branches(site: Site, page: Any) -> None:
    page.goto(f"{site.url}/ui/pattern?id=root")
    nodes = page.locator("svg.lineage a.node")
    wait_for(lambda: nodes.count() == 4, what="root, its two children and the merge")
    edges = page.locator("svg.lineage path.edge")
    assert edges.count() == 4
    assert page.locator('path.edge[data-from="root"]').count() == 2  # the fork: two branches out
    assert page.locator('path.edge[data-to="merged"]').count() == 2  # the merge: two branches in
    assert page.locator('path.edge.merge[data-to="merged"]').count() == 2
    assert page.locator("a.node.self").get_attribute("data-id") == "root"
    assert page.locator("#fields").inner_text().count("pattern_created") == 1
    page.locator('a.node[data-id="merged"]').click()  # each node is a link to its page
    page.wait_for_url("**/ui/pattern?id=merged")
    wait_for(lambda: nodes.count() == 4 and page.locator("a.node.self").get_attribute("data-id") == "merged",
             what="the merge's own page: its ancestry, the same four nodes")
    assert page.locator("a.node.ancestor").count() == 3 and edges.count() == 4
    assert page.get_by_role("link", name="fork").count() >= 1  # its parents as links in the data
    page.goto(f"{site.url}/ui/pattern?id=main")  # a middle node: every kind of neighbour
    wait_for(lambda: nodes.count() == 4, what="main, its parent, its child and the child's other parent")
    roles = {page.locator(f'a.node[data-id="{i}"]').get_attribute("class") for i in ("root", "main", "merged", "fork")}
    assert roles == {"node ancestor", "node self", "node descendant", "node other"}
    save_screenshot(page, "explorer-pattern")
    page.goto(f"{site.url}/ui/pattern?id=" + versions_of(site.url, site.app)[0]["pattern_id"])
    wait_for(lambda: nodes.count() == 3, what="app.py's chain from its first version")
    assert page.locator("a.node.descendant").count() == 2


def test_a_hostile_file_name_and_code_render_as_text(site: Site, page: Any) -> None:
    def no_injection() -> None:
        assert page.locator("img").count() == 0
        scripts = page.evaluate("[...document.scripts].map(s => s.getAttribute('src') || 'INLINE')")
        assert all(s.startswith("/ui/static/") for s in scripts), scripts

    page.goto(site.url + "/ui/?search=onerror")
    link = page.locator("#files tbody a")
    wait_for(lambda: link.count() == 1, what="the hostile file listed")
    assert link.inner_text() == str(site.hostile)
    no_injection()
    link.click()
    page.wait_for_url("**/ui/file?path=*")
    code = page.locator("#code-box code")
    wait_for(lambda: code.count() == 1 and code.text_content() == HOSTILE_CODE, what="the code, as text")
    assert page.locator("#title").inner_text() == str(site.hostile)
    no_injection()
    page.locator("#timeline a", has_text="node").click()
    wait_for(lambda: page.locator("a.node.self").count() == 1, what="the hostile node's graph")
    assert HOSTILE_NAME in page.locator("#title").inner_text()
    wait_for(lambda: page.locator("#code-box code").text_content() == HOSTILE_CODE, what="its code")
    no_injection()


def test_with_a_token_only_the_login_is_served_until_it_is_given(tmp_path: Path, page: Any) -> None:
    with serve(tmp_path / "service", env_extra={"PATTERN_TRACKER__SERVE__TOKEN": TOKEN}) as url:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        track(url, "pattern_created", "secret", [], bearer)
        assert http("GET", url + "/standin/v1/files")[0] == 401
        assert http("GET", f"{url}{PREFIX}/lineage/secret?query_type=ancestry")[0] == 401
        status, headers = http("GET", url + "/ui/file?path=/lib/secret.py")
        assert status == 303 and headers["Location"] == "/ui/login?next=%2Fui%2Ffile%3Fpath%3D%2Flib%2Fsecret.py"
        assert http("GET", url + "/standin/v1/files", headers=bearer)[0] == 200

        page.goto(url + "/ui/")
        assert page.url.startswith(url + "/ui/login")
        page.get_by_label("Bearer token").fill("not-the-token")
        page.keyboard.press("Enter")
        page.wait_for_url("**/ui/login?failed=1*")
        assert page.get_by_role("alert").is_visible()
        save_screenshot(page, "explorer-login")
        page.get_by_label("Bearer token").fill(TOKEN)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(url + "/ui/")
        rows = page.locator("#files tbody tr")
        wait_for(lambda: rows.count() == 1, what="the listing, once logged in")
        cookies = page.context.cookies()
        assert [c["name"] for c in cookies] == ["pt_session"] and TOKEN not in cookies[0]["value"]
        assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
        page.goto(url + "/ui/file?path=/lib/secret.py")
        wait_for(lambda: page.locator("#timeline li").count() == 1, what="a file page, logged in")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url("**/ui/login")
        page.goto(url + "/ui/")
        assert page.url.startswith(url + "/ui/login")
        assert page.context.cookies() == []


def test_the_pages_load_quickly(site: Site, page: Any) -> None:
    """Each page is loaded (document, scripts, styles: the load event) well under a second, and
    shows its data soon after (a local server; generous bounds: the test machine is shared)."""
    loaded, shown = {}, {}
    for name, path, ready in [("files", "/ui/", "#files tbody tr"),
                              ("file", site.file_url(site.app)[len(site.url):], "#diff tr.add"),
                              ("pattern", "/ui/pattern?id=merged", "svg.lineage a.node")]:
        t0 = time.perf_counter()
        page.goto(site.url + path)
        page.locator(ready).first.wait_for()
        shown[name] = round((time.perf_counter() - t0) * 1000)
        loaded[name] = round(page_load_ms(page))
    print("explorer pages (ms): load event", loaded, "data shown", shown)
    assert max(loaded.values()) < 1000, loaded
    assert max(shown.values()) < 2000, shown
