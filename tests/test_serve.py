"""`serve`: the Phase 4 contract on a real aiohttp server on 127.0.0.1, over each lineage store.

Every test runs on the embedded LMDB store and on PostgreSQL (tests.lineage_backends), except
those marked ``lmdb_only``: they reach into the LMDB store object itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from typing import Any

import lmdb
import pytest
from aiohttp import web

from pattern_tracker.model.api import PREFIX
from pattern_tracker.service.serve import run_server
from tests.clitools import async_wait_for, cli_env, run_cli
from tests.lineage_backends import every_backend, lmdb_only  # noqa: F401 - every test on both stores
from tests.servetools import TRACK, call, created, modified

BATCH = PREFIX + "/lineage/track/batch"


async def test_chain_and_ancestry(serve_url: str, stored) -> None:
    status, body, _ = await call("POST", serve_url + TRACK, json=created("p1"))
    assert status == 200 and body["success"] is True
    assert set(body["data"]) >= {"lineage_id", "pattern_node_id", "event_id", "pattern_id", "pattern_name", "created_at"}
    meta = body["metadata"]
    assert set(meta) == {"correlation_id", "operation", "duration_ms", "pattern_id", "processing_time_ms"}
    assert meta["operation"] == "track_creation" and meta["pattern_id"] == "p1"
    _, b2, _ = await call("POST", serve_url + TRACK, json=modified("p2", "p1"))
    _, b3, _ = await call("POST", serve_url + TRACK, json=modified("p3", "p2"))
    assert (b2["data"]["generation"], b3["data"]["generation"]) == (2, 3)
    assert b3["metadata"]["operation"] == "track_modification"

    status, anc, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/p3?query_type=ancestry")
    assert status == 200 and anc["metadata"]["query_type"] == "ancestry"
    ids = [a["ancestor_pattern_id"] for a in anc["data"]["ancestors"]]
    assert ids == ["p3", "p2", "p1"] and anc["data"]["total_ancestors"] == 2
    assert set(anc["data"]["ancestors"][1]) == {"ancestor_id", "ancestor_pattern_id", "generation", "edge_type", "created_at"}
    status, desc, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/p1?query_type=descendants")
    assert status == 200 and desc["data"]["total_descendants"] == 1
    assert set(desc["data"]["descendants"][0]) == {"descendant_id", "descendant_pattern_id", "edge_type",
                                                   "transformation_type", "created_at"}

    status, again, _ = await call("POST", serve_url + TRACK, json=created("p1"))
    assert status == 200 and again["data"]["status"] == "already_exists"
    assert again["data"]["pattern_node_id"] == body["data"]["pattern_node_id"]
    assert await stored.count() == 3


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"event_type": "pattern_created", "pattern_id": "x"}, "track_creation requires pattern_data"),
        ({"event_type": "pattern_modified", "pattern_id": "x"}, "track_modification requires parent_pattern_ids"),
        ({"event_type": "pattern_merged", "pattern_id": "x", "parent_pattern_ids": ["a"]},
         "track_merge requires at least 2 parent_pattern_ids"),
        ({"event_type": "nope", "pattern_id": "x"}, "'nope' is not a valid LineageEventType"),
        ({"event_type": "pattern_modified", "pattern_id": "x", "parent_pattern_ids": ["a"], "edge_type": "zz"},
         "'zz' is not a valid EdgeType"),
        ({"event_type": "pattern_modified", "pattern_id": "x", "parent_pattern_ids": ["a"],
          "transformation_type": "zz"}, "'zz' is not a valid TransformationType"),
    ],
)
async def test_static_rules_are_400(serve_url: str, payload: dict[str, Any], detail: str) -> None:
    status, body, _ = await call("POST", serve_url + TRACK, json=payload)
    assert (status, body) == (400, {"detail": detail})


async def test_missing_parent_is_400_like_the_service(serve_url: str) -> None:
    status, body, _ = await call("POST", serve_url + TRACK, json=modified("c", "ghost"))
    assert status == 400 and body["success"] is False
    assert body["error"] == body["detail"] == "Validation error: Parent pattern not found: ghost"
    assert body["metadata"]["error_type"] == "validation_error"


def forked(pid: str, *parents: str, file_path: str = "/src/fork.py", **kw: Any) -> dict[str, Any]:
    return {"event_type": "pattern_forked", "pattern_id": pid, "pattern_version": "1", "file_path": file_path,
            "parent_pattern_ids": list(parents), "pattern_data": {"code": f"# {pid}\n"}, **kw}


async def test_fork_resolves_its_parent_like_a_modification(serve_url: str, stored) -> None:
    _, root, _ = await call("POST", serve_url + TRACK, json=created("root"))
    status, body, _ = await call("POST", serve_url + TRACK, json=forked("fork", "root"))
    assert status == 200 and body["success"] is True and body["metadata"]["operation"] == "track_fork"
    assert body["data"]["generation"] == 2
    assert body["data"]["parent_node_ids"] == [root["data"]["pattern_node_id"]]

    status, anc, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/fork?query_type=ancestry")
    assert status == 200
    assert [(a["ancestor_pattern_id"], a["generation"], a["edge_type"]) for a in anc["data"]["ancestors"]] == [
        ("fork", 2, None), ("root", 1, "modified_from")]
    status, desc, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/root?query_type=descendants")
    assert status == 200
    assert [(d["descendant_pattern_id"], d["edge_type"], d["transformation_type"])
            for d in desc["data"]["descendants"]] == [("fork", "modified_from", "refactor")]


async def test_fork_with_a_missing_parent_or_none_is_400(serve_url: str, stored) -> None:
    status, body, _ = await call("POST", serve_url + TRACK, json=forked("f1", "ghost"))
    assert status == 400 and body["success"] is False
    assert body["error"] == body["detail"] == "Validation error: Parent pattern not found: ghost"
    status, body, _ = await call("POST", serve_url + TRACK, json=forked("f2"))
    assert status == 400 and body["success"] is False and body["detail"]
    assert await stored.count() == 0
    status, _, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/f1?query_type=ancestry")
    assert status == 404


async def test_modification_with_two_parents_resolves_only_the_first(serve_url: str, stored) -> None:
    _, a, _ = await call("POST", serve_url + TRACK, json=created("a"))
    await call("POST", serve_url + TRACK, json=created("b", file_path="/src/b.py"))
    await call("POST", serve_url + TRACK, json=modified("b2", "b", file_path="/src/b.py"))
    status, body, _ = await call("POST", serve_url + TRACK, json={**modified("m", "a"), "parent_pattern_ids": ["a", "b2"]})
    assert status == 200
    # generation from the first parent (b2 is generation 2: a max over both would give 3), one edge
    assert body["data"]["generation"] == 2 and body["data"]["parent_node_ids"] == [a["data"]["pattern_node_id"]]
    _, desc, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/b2?query_type=descendants")
    assert desc["data"]["total_descendants"] == 0
    _, anc, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/m?query_type=ancestry")
    assert [r["ancestor_pattern_id"] for r in anc["data"]["ancestors"]] == ["m", "a"]

    status, body, _ = await call("POST", serve_url + TRACK, json={**modified("n", "a"), "parent_pattern_ids": ["a", "ghost"]})
    assert status == 200 and body["data"]["generation"] == 2
    status, body, _ = await call("POST", serve_url + TRACK, json={**modified("o", "a"), "parent_pattern_ids": ["ghost", "a"]})
    assert status == 400 and body["detail"] == "Validation error: Parent pattern not found: ghost"


async def test_unknown_fields_ignored(serve_url: str) -> None:
    status, body, _ = await call("POST", serve_url + TRACK, json={**created("u"), "metadata": {"x": 1}, "extra": 2})
    assert status == 200 and body["success"]


async def test_422_shapes(serve_url: str) -> None:
    status, body, _ = await call("POST", serve_url + TRACK, data=b'{"event_type": ', headers={"Content-Type": "application/json"})
    assert status == 422 and body["detail"][0]["type"] == "json_invalid" and body["detail"][0]["loc"][0] == "body"

    status, body, _ = await call("POST", serve_url + TRACK, json={"event_type": "pattern_created"})
    assert status == 422
    assert body["detail"] == [{"type": "missing", "loc": ["body", "pattern_id"], "msg": "Field required",
                               "input": {"event_type": "pattern_created"}}]

    status, body, _ = await call("POST", serve_url + TRACK, json={**created("w"), "pattern_version": 3})
    assert status == 422
    assert body["detail"] == [{"type": "string_type", "loc": ["body", "pattern_version"],
                               "msg": "Input should be a valid string", "input": 3}]

    status, body, _ = await call("POST", serve_url + TRACK, json=[1, 2])
    assert status == 422 and body["detail"][0]["loc"] == ["body"]
    assert body["detail"][0]["type"] == "model_attributes_type"

    status, body, _ = await call("POST", serve_url + TRACK, data=b"", headers={"Content-Type": "application/json"})
    assert status == 422 and body["detail"][0]["type"] == "missing"

    events = [created("a"), created("b"), created("c"), {"event_type": "pattern_created", "pattern_data": {"k": 1}}]
    status, body, _ = await call("POST", serve_url + BATCH, json={"events": events})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "events", 3, "pattern_id"]

    events[3] = {**created("d"), "parent_pattern_ids": ["ok", 7]}
    status, body, _ = await call("POST", serve_url + BATCH, json={"events": events})
    assert status == 422
    assert body["detail"][0] == {"type": "string_type", "loc": ["body", "events", 3, "parent_pattern_ids", 1],
                                 "msg": "Input should be a valid string", "input": 7}

    status, body, _ = await call("POST", serve_url + BATCH, json={"batch_id": "x"})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "events"]


async def test_batch_sequential_parent_and_child(serve_url: str, stored) -> None:
    payload = {"events": [created("b1"), modified("b2", "b1"), modified("b3", "b2")], "batch_id": "x",
               "processing_mode": "sequential"}
    status, body, _ = await call("POST", serve_url + BATCH, json=payload)
    assert status == 200 and body["success"] is True and body["failed_results"] is None
    summary = body["batch_summary"]
    assert summary == {"total_events": 3, "successful_events": 3, "failed_events": 0, "handled_duplicates": 0,
                       "processing_mode": "sequential", "requested_processing_mode": "sequential"}
    assert [r["event_index"] for r in body["successful_results"]] == [0, 1, 2]
    assert body["successful_results"][2]["data"]["generation"] == 3
    assert set(body["metadata"]) == {"processing_time_ms", "average_time_per_event", "batch_efficiency_gain"}

    status, body, _ = await call("POST", serve_url + BATCH, json={**payload, "processing_mode": "whatever"})
    assert status == 200 and body["batch_summary"]["handled_duplicates"] == 3
    assert body["batch_summary"]["processing_mode"] == "parallel"
    assert body["batch_summary"]["requested_processing_mode"] == "whatever"
    assert await stored.count() == 3


async def test_batch_static_violation_rejects_whole_batch(serve_url: str, stored) -> None:
    events = [created("s1"), {"event_type": "pattern_created", "pattern_id": "s2"}, created("s3")]
    status, body, _ = await call("POST", serve_url + BATCH, json={"events": events})
    assert (status, body) == (400, {"detail": "track_creation requires pattern_data"})
    assert await stored.count() == 0


async def test_batch_missing_parent_fails_only_that_event(serve_url: str, stored) -> None:
    events = [created("m1"), modified("m2", "ghost"), modified("m3", "m1")]
    status, body, _ = await call("POST", serve_url + BATCH, json={"events": events, "processing_mode": "sequential"})
    assert status == 200 and body["success"] is False
    assert body["batch_summary"]["failed_events"] == 1 and body["batch_summary"]["successful_events"] == 2
    (failed,) = body["failed_results"]
    assert failed["event_index"] == 1 and failed["pattern_id"] == "m2"
    assert failed["error"] == "Validation error: Parent pattern not found: ghost"
    assert [r["event_index"] for r in body["successful_results"]] == [0, 2]
    assert await stored.count() == 2


async def test_batch_forks_follow_the_same_rules_per_event(serve_url: str, stored) -> None:
    events = [created("r1"), forked("k1", "r1"), forked("k2", "ghost"), forked("k3"),
              {**modified("k4", "r1"), "parent_pattern_ids": ["r1", "ghost"]}]
    status, body, _ = await call("POST", serve_url + BATCH, json={"events": events, "processing_mode": "sequential"})
    assert status == 200 and body["success"] is False
    failed = {f["event_index"]: f["error"] for f in body["failed_results"]}
    assert set(failed) == {2, 3} and failed[2] == "Validation error: Parent pattern not found: ghost"
    ok = {r["event_index"]: r["data"] for r in body["successful_results"]}
    assert set(ok) == {0, 1, 4} and ok[1]["generation"] == ok[4]["generation"] == 2
    assert ok[1]["parent_node_ids"] == [ok[0]["pattern_node_id"]]
    assert await stored.count() == 3
    # all-or-nothing static validation is unchanged: one static violation refuses the whole batch
    status, body, _ = await call("POST", serve_url + BATCH, json={"events": [forked("k5", "r1"), {
        "event_type": "pattern_modified", "pattern_id": "k6"}]})
    assert (status, body) == (400, {"detail": "track_modification requires parent_pattern_ids"})
    assert await stored.get("k5") is None


async def _post_slowly(url: str, path: str,
                       payload: dict[str, Any]) -> tuple[asyncio.StreamWriter, bytes, asyncio.StreamReader]:
    """Send the request line, headers and the first bytes of the body; the caller sends the rest."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps(payload).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:10])
    await writer.drain()
    return writer, body[10:], reader


def _batch_writer_counts(monkeypatch) -> dict[str, int]:
    """Batch requests the server started reading, and batches it submitted (its own _BatchWriter,
    observed by wrapping the real methods): the states these tests wait on instead of sleeping."""
    from pattern_tracker.service.group_commit import BatchWriter as _BatchWriter

    counts = {"reading": 0, "submitted": 0}
    real_reading, real_submit = _BatchWriter.reading, _BatchWriter.submit

    @contextlib.contextmanager
    def reading(self, arrived):
        counts["reading"] += 1
        with real_reading(self, arrived):
            yield

    def submit(self, events, arrived):
        counts["submitted"] += 1
        return real_submit(self, events, arrived)

    monkeypatch.setattr(_BatchWriter, "reading", reading)
    monkeypatch.setattr(_BatchWriter, "submit", submit)
    return counts


def _transaction_sizes(monkeypatch, lineage, hold_first: threading.Event | None = None) -> list[int]:
    """Record the number of events of each store transaction; ``hold_first`` keeps the first one
    committing (its execution is over, so requests are decoded meanwhile) until it is set."""
    sizes: list[int] = []
    real = lineage.track_many

    def recorded(reqs, *args, before_commit=None, **kwargs):
        def hold() -> None:
            if before_commit is not None:
                before_commit()
            if hold_first is not None and len(sizes) == 1:
                hold_first.wait(10)

        sizes.append(len(reqs))
        return real(reqs, *args, before_commit=hold, **kwargs)

    monkeypatch.setattr(lineage, "track_many", recorded)
    return sizes


@lmdb_only  # holds the commit by blocking the store's thread in before_commit
async def test_batches_waiting_behind_a_commit_share_the_next_transaction(serve_url: str, lineage, stored,
                                                                          monkeypatch) -> None:
    release = threading.Event()
    sizes = _transaction_sizes(monkeypatch, lineage, hold_first=release)
    counts = _batch_writer_counts(monkeypatch)
    first = asyncio.create_task(call("POST", serve_url + BATCH, json={"events": [created("w0", "/src/w.py")]}))
    await async_wait_for(lambda: sizes, what="the first transaction")
    later = [asyncio.create_task(call("POST", serve_url + BATCH, json={"events": [created(f"w{i}", f"/src/{i}.py")]}))
             for i in (1, 2)]
    await async_wait_for(lambda: counts["submitted"] == 3, what="both later batches waiting behind the held commit")
    release.set()
    answers = [await first, *[await task for task in later]]
    assert [(status, body["success"]) for status, body, _ in answers] == [(200, True)] * 3
    assert sizes == [1, 2] and await stored.count() == 3


async def test_batches_run_in_arrival_order_when_bodies_finish_out_of_order(serve_url: str, lineage, stored,
                                                                             monkeypatch) -> None:
    """A parent's batch whose body finishes uploading after its child's still runs first."""
    sizes = _transaction_sizes(monkeypatch, lineage)
    counts = _batch_writer_counts(monkeypatch)
    writer, rest, reader = await _post_slowly(serve_url, BATCH, {"events": [created("g1"), created("g0", "/src/c.py")]})
    await async_wait_for(lambda: counts["reading"] == 1, what="the parent's request arrived; its body has not")
    child = asyncio.create_task(call("POST", serve_url + BATCH, json={"events": [modified("g2", "g1")]}))
    await async_wait_for(lambda: counts["submitted"] == 1, what="the child's batch read, waiting for the parent's")
    writer.write(rest)
    await writer.drain()
    status, body, _ = await child
    raw = await reader.read()
    writer.close()
    parent = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert status == 200 and body["success"] is True, body
    assert body["successful_results"][0]["data"]["generation"] == 2
    assert parent["success"] is True and [r["event_index"] for r in parent["successful_results"]] == [0, 1]
    assert sizes == [3] and await stored.count() == 3


async def test_a_stalled_upload_holds_later_batches_only_briefly(serve_url: str, monkeypatch) -> None:
    counts = _batch_writer_counts(monkeypatch)
    writer, _, _ = await _post_slowly(serve_url, BATCH, {"events": [created("s1")]})
    await async_wait_for(lambda: counts["reading"] == 1, what="the stalled request being read")
    t0 = asyncio.get_running_loop().time()
    status, body, _ = await call("POST", serve_url + BATCH, json={"events": [created("s2", "/src/s.py")]})
    assert status == 200 and body["success"] is True
    assert asyncio.get_running_loop().time() - t0 < 2.0
    writer.close()


@lmdb_only  # an LMDB error from the store object (PostgreSQL's faults: tests/test_lineage_pg.py, the replica tests)
async def test_store_failure_fails_every_batch_of_the_transaction(serve_url: str, lineage, monkeypatch) -> None:
    def broken(reqs, *args, **kwargs):
        raise lmdb.Error("disk gone")

    monkeypatch.setattr(lineage, "track_many", broken)
    answers = await asyncio.gather(*(call("POST", serve_url + BATCH, json={"events": [created(f"x{i}")]})
                                     for i in range(3)))
    unavailable = (503, {"detail": "Database connection not available"})
    assert [(status, body) for status, body, _ in answers] == [unavailable] * 3


async def test_empty_batch_is_500(serve_url: str) -> None:
    status, body, _ = await call("POST", serve_url + BATCH, json={"events": []})
    assert (status, body) == (500, {"detail": "Lineage tracking failed: empty batch"})


async def test_404_unknown_pattern(serve_url: str) -> None:
    for qt in ("ancestry", "descendants"):
        status, body, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/ghost?query_type={qt}")
        assert status == 404 and body["success"] is False
        assert body["error"] == "Validation error: Pattern not found: ghost"
    status, body, _ = await call("GET", serve_url + "/no/such/route")
    assert (status, body) == (404, {"detail": "Not Found"})


async def test_query_by_file(serve_url: str) -> None:
    await call("POST", serve_url + BATCH, json={"events": [created("q1"), created("z1", file_path="/src/z.py"),
                                                           modified("q2", "q1")], "processing_mode": "sequential"})
    status, body, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/query?file_path=/src/a.py&limit=10")
    assert status == 200 and body["data"]["total"] == 2
    assert [n["pattern_id"] for n in body["data"]["patterns"]] == ["q1", "q2"]
    status, body, _ = await call("GET", f"{serve_url}{PREFIX}/lineage/query?file_path=/src/a.py&limit=x")
    assert status == 422 and body["detail"][0]["loc"] == ["query", "limit"]


async def test_token(serve_factory) -> None:
    url = await serve_factory(token="s3cret")
    status, body, headers = await call("POST", url + TRACK, json=created("t1"))
    assert (status, body) == (401, {"detail": "Not authenticated"}) and headers["WWW-Authenticate"] == "Bearer"
    status, _, _ = await call("POST", url + TRACK, json=created("t1"), headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, body, _ = await call("POST", url + TRACK, json=created("t1"), headers={"Authorization": "Bearer s3cret"})
    assert status == 200 and body["success"]
    assert (await call("GET", url + "/health"))[0] == 200
    assert (await call("GET", url + PREFIX + "/health"))[0] == 200


async def test_oversize_is_413(serve_factory) -> None:
    url = await serve_factory(max_request_bytes=1024)
    payload = created("big")
    payload["pattern_data"] = {"code": "x" * 2048}
    status, body, _ = await call("POST", url + TRACK, json=payload)
    assert status == 413 and "detail" in body
    status, _, _ = await call("POST", url + TRACK, json=created("small"))
    assert status == 200


async def test_rate_limit_429(serve_factory) -> None:
    url = await serve_factory(rate_limit_per_minute=2)
    assert (await call("POST", url + TRACK, json=created("r1")))[0] == 200
    assert (await call("GET", url + PREFIX + "/lineage/r1"))[0] == 200
    status, body, headers = await call("POST", url + TRACK, json=created("r2"))
    assert (status, body) == (429, {"detail": "Rate limit exceeded"})
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert (await call("GET", url + "/health"))[0] == 200  # health is never limited


async def test_health_bodies(serve_url: str) -> None:
    status, body, _ = await call("GET", serve_url + "/health")
    assert status == 200 and body["status"] == "healthy"
    assert isinstance(body["service_version"], str) and body["uptime_seconds"] >= 0
    status, body, _ = await call("GET", serve_url + PREFIX + "/health")
    assert status == 200 and body["status"] == "healthy"
    assert body["components"]["lineage_tracker"] == "operational"
    assert "timestamp" in body and "response_time_ms" in body


async def test_fault_hook(serve_factory) -> None:
    seen: list[str] = []

    async def hook(request: web.Request) -> web.StreamResponse | None:
        seen.append(request.path)
        if request.path.endswith("/track"):
            return web.json_response({"detail": "Database connection not available"}, status=503)
        return None

    url = await serve_factory(fault_hook=hook)
    status, body, _ = await call("POST", url + TRACK, json=created("f1"))
    assert (status, body) == (503, {"detail": "Database connection not available"})
    assert (await call("GET", url + PREFIX + "/health"))[0] == 200
    assert (await call("GET", url + "/health"))[0] == 200
    assert seen == [TRACK, PREFIX + "/health"]


async def test_run_server_prints_and_stops(lineage, capsys) -> None:
    urls: list[str] = []
    task = asyncio.create_task(run_server("127.0.0.1", 0, lineage, ready=urls.append))
    await async_wait_for(lambda: urls, what="run_server's ready callback")
    assert urls and re.fullmatch(r"http://127\.0\.0\.1:\d+", urls[0])
    status, body, _ = await call("GET", urls[0] + "/health")
    assert status == 200 and body["status"] == "healthy"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert f"serving Phase 4 API on {urls[0]}" in capsys.readouterr().err


def test_serve_on_a_port_in_use_is_a_one_line_usage_error(tmp_path) -> None:
    """A busy port is the user's to change: exit 2, one line naming the port and --port, no traceback."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = run_cli("serve", "--host", "127.0.0.1", "--port", str(port), env=cli_env(tmp_path / "d"))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "already in use" in lines[0] and "--port" in lines[0]
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr and "OSError" not in out.stderr
