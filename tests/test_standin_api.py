"""serve's stand-in-only read endpoints (/standin/v1, for the web UI) and the UI's session cookie,
on a real aiohttp server on 127.0.0.1, over each lineage store (LMDB and PostgreSQL: the same answers)."""

from __future__ import annotations

import aiohttp
from pattern_tracker.model.api import PREFIX
from pattern_tracker.service import ui_session
from pattern_tracker.service.app_state import open_ui

from tests.lineage_backends import every_backend, lmdb_only  # noqa: F401 - every test on both stores
from tests.servetools import TRACK, call, created, modified


async def chain(url: str, headers: dict[str, str] | None = None) -> None:
    for body in (created("p1"), modified("p2", "p1"), modified("p3", "p2")):
        body["pattern_data"]["occurred_at"] = 1_700_000_000
        body["pattern_data"]["session_id"] = "s-1"
        body["tool_name"] = "Edit"
        status, _, _ = await call("POST", url + TRACK, json=body, headers=headers)
        assert status == 200


async def test_files_page_file_versions_and_nodes(serve_url: str) -> None:
    await chain(serve_url)
    await call("POST", serve_url + TRACK, json=created("q1", file_path="/src/b.py"))
    status, body, _ = await call("GET", serve_url + "/standin/v1/files?limit=1")
    assert status == 200 and body["success"] is True and body["metadata"]["standin_extension"] is True
    page = body["data"]
    assert page["next"] == "/src/a.py" and page["files"][0]["versions"] == 3
    assert page["files"][0]["last_session"] == "s-1" and page["files"][0]["last_tool"] == "Edit"
    _, body, _ = await call("GET", serve_url + "/standin/v1/files?after=%2Fsrc%2Fa.py&search=B.PY")
    assert [f["file_path"] for f in body["data"]["files"]] == ["/src/b.py"] and body["data"]["next"] is None

    _, body, _ = await call("GET", serve_url + "/standin/v1/file?path=%2Fsrc%2Fa.py")
    versions = body["data"]["versions"]
    assert [(v["pattern_id"], v["generation"]) for v in versions] == [("p1", 1), ("p2", 2), ("p3", 3)]
    assert versions[2]["parent_pattern_ids"] == ["p2"] and versions[2]["size_bytes"] == len("# p3\n")
    assert versions[2]["lines"] == 1 and versions[2]["edit_time"] == "2023-11-14T22:13:20+00:00"
    assert "pattern_data" not in versions[0] and body["data"]["truncated"] is False

    status, body, _ = await call("GET", serve_url + "/standin/v1/pattern?id=p2")
    assert status == 200 and body["data"]["pattern_data"]["code"] == "# p2\n"
    status, body, _ = await call("GET", serve_url + "/standin/v1/pattern?id=p2&version=9")
    assert status == 404 and body == {"detail": "Pattern not found: p2 version 9"}
    status, body, _ = await call("GET", serve_url + "/standin/v1/patterns?id=p3&id=p1&id=nope")
    assert status == 200 and set(body["data"]["patterns"]) == {"p1", "p3"} and body["data"]["missing"] == ["nope"]
    assert "pattern_data" not in body["data"]["patterns"]["p3"]


async def test_truncated_says_whether_a_file_has_more_versions_than_shown(serve_url: str) -> None:
    """A file of exactly ``limit`` versions is whole: it was called truncated (the page then said
    "there are more" under a file of exactly 1000 versions)."""
    await chain(serve_url)
    for limit, shown, truncated in ((3, ["p1", "p2", "p3"], False), (2, ["p1", "p2"], True)):
        _, body, _ = await call("GET", serve_url + f"/standin/v1/file?path=%2Fsrc%2Fa.py&limit={limit}")
        assert [v["pattern_id"] for v in body["data"]["versions"]] == shown, limit
        assert (body["data"]["total"], body["data"]["truncated"]) == (len(shown), truncated), limit


async def test_bad_parameters_are_422s(serve_url: str) -> None:
    cases = {
        "/standin/v1/files?limit=0": ("greater_than_equal", "limit"),
        "/standin/v1/files?limit=201": ("less_than_equal", "limit"),
        "/standin/v1/files?limit=x": ("int_parsing", "limit"),
        "/standin/v1/files?search=" + "a" * 501: ("string_too_long", "search"),
        "/standin/v1/file": ("missing", "path"),
        "/standin/v1/pattern": ("missing", "id"),
        "/standin/v1/patterns": ("value_error", "id"),
    }
    for path, (kind, name) in cases.items():
        status, body, _ = await call("GET", serve_url + path)
        assert status == 422, path
        assert body["detail"][0]["type"] == kind and body["detail"][0]["loc"] == ["query", name], path


@lmdb_only  # closes the LMDB store under the server (PostgreSQL's outages: tests/test_lineage_pg.py)
async def test_a_store_that_cannot_answer_is_a_503(serve_url: str, store) -> None:
    store.close()
    for path in ("/standin/v1/files", "/standin/v1/file?path=/a", "/standin/v1/pattern?id=x", "/standin/v1/patterns?id=x"):
        status, body, headers = await call("GET", serve_url + path)
        assert (status, body["detail"]) == (503, "Database connection not available"), path
        assert headers["Retry-After"] == "1"


async def test_with_a_token_reads_take_the_bearer_or_a_session_cookie_writes_only_the_bearer(serve_factory) -> None:
    url = await serve_factory(token="s3cret")
    bearer = {"Authorization": "Bearer s3cret"}
    await chain(url, bearer)
    status, body, headers = await call("GET", url + "/standin/v1/files")
    assert (status, body, headers["WWW-Authenticate"]) == (401, {"detail": "Not authenticated"}, "Bearer")
    assert (await call("GET", url + "/standin/v1/files", headers=bearer))[0] == 200

    cookie = {"Cookie": f"{ui_session.COOKIE}={ui_session.issue(b's3cret')}"}
    assert (await call("GET", url + "/standin/v1/files", headers=cookie))[0] == 200
    assert (await call("GET", f"{url}{PREFIX}/lineage/p1?query_type=descendants", headers=cookie))[0] == 200
    status, _, _ = await call("POST", url + TRACK, json=created("x1"), headers=cookie)
    assert status == 401  # a cookie never authorises a write
    for value in (ui_session.issue(b"other-token"), ui_session.issue(b"s3cret", now=1.0), "s3cret", "1.2.3", "é.é.é"):
        status, _, _ = await call("GET", url + "/standin/v1/files", headers={"Cookie": f"{ui_session.COOKIE}={value}"})
        assert status == 401, value


async def test_a_web_face_marks_its_public_paths_and_answers_denials_its_way(serve_factory) -> None:
    from aiohttp import web

    def setup(app: web.Application) -> None:
        async def page(_request: web.Request) -> web.Response:
            return web.Response(text="page")

        app.router.add_get("/ui/open", page)
        app.router.add_get("/ui/closed", page)
        open_ui(app, public=lambda r: r.path == "/ui/open",
                denied=lambda r: web.Response(status=303, headers={"Location": "/ui/open"}) if r.path.startswith("/ui/") else None)

    url = await serve_factory(token="t", setup=setup)
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/ui/open") as resp:
            assert resp.status == 200
        async with session.get(url + "/ui/closed", allow_redirects=False) as resp:
            assert (resp.status, resp.headers["Location"]) == (303, "/ui/open")
        async with session.get(url + "/standin/v1/files") as resp:
            assert resp.status == 401
