"""HttpSink against real aiohttp servers on 127.0.0.1 (a small fake of the Phase 4 service)."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from typing import Any

import msgspec
import pytest
from aiohttp import web

from pattern_tracker import __version__
from pattern_tracker.model.events import EVENT_TYPES, PatternEvent, build_event
from pattern_tracker.model.api import PREFIX as API_PREFIX
from pattern_tracker.sinks.http import HttpSink, SinkError, classify_error
from pattern_tracker.sinks.retry_after import MAX_RETRY_AFTER, parse_retry_after
from tests.clitools import free_port

P = API_PREFIX
Handler = Any  # async (request, body) -> web.Response | None  (None: fall through to the fake)


class FakeService:
    """Enough of the Phase 4 service: static validation (400), parent check, already_exists."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.nodes: set[tuple[str, str]] = set()
        self.has_batch = True
        self.has_query = True
        self.has_api_health = True
        self.batch_handler: Handler | None = None
        self.single_handler: Handler | None = None
        self.health_body: dict[str, Any] = {"status": "healthy", "components": {"lineage_tracker": "operational"}}
        self.root_health_body: dict[str, Any] = {"status": "healthy", "service_version": "x"}
        self.release = asyncio.Event()
        self.base_url = ""

    # -- service rules -------------------------------------------------------------------
    @staticmethod
    def static_error(ev: dict[str, Any]) -> str | None:
        if ev.get("event_type") not in EVENT_TYPES:
            return f"Invalid event_type: {ev.get('event_type')}"
        if ev["event_type"] == "pattern_created" and not ev.get("pattern_data"):
            return "Validation error: pattern_created requires pattern_data"
        if ev["event_type"] == "pattern_modified" and not ev.get("parent_pattern_ids"):
            return "Validation error: pattern_modified requires at least one parent_pattern_ids entry"
        return None

    def execute(self, ev: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        key = (ev["pattern_id"], ev.get("pattern_version", "1.0.0"))
        if key in self.nodes:
            return {"status": "already_exists", "pattern_id": ev["pattern_id"]}, None
        known = {pid for pid, _ in self.nodes}
        for parent in ev.get("parent_pattern_ids", []):
            if parent not in known:
                return None, f"Validation error: Parent pattern not found: {parent}"
        self.nodes.add(key)
        return {"pattern_id": ev["pattern_id"], "lineage_id": "l-1", "event_id": "e-1"}, None

    # -- routes --------------------------------------------------------------------------
    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = msgspec.json.decode(raw) if raw else None
        self.requests.append({"method": request.method, "path": request.path, "headers": dict(request.headers),
                              "query": dict(request.query), "body": body})
        return body

    async def single(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if self.single_handler is not None and (resp := await self.single_handler(request, body)) is not None:
            return resp
        if not isinstance(body, dict) or "pattern_id" not in body or "event_type" not in body:
            return web.json_response({"detail": [{"type": "missing", "loc": ["body", "pattern_id"],
                                                  "msg": "Field required", "input": body}]}, status=422)
        if err := self.static_error(body):
            return web.json_response({"detail": err}, status=400)
        data, err = self.execute(body)
        if err:
            return web.json_response({"detail": err}, status=400)
        return web.json_response({"success": True, "data": data, "metadata": {"operation": "track"}})

    async def batch(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if not self.has_batch:
            return web.json_response({"detail": "Not Found"}, status=404)
        if self.batch_handler is not None and (resp := await self.batch_handler(request, body)) is not None:
            return resp
        events = body["events"]
        assert events, "the client must never send an empty batch"
        for ev in events:
            if err := self.static_error(ev):
                return web.json_response({"detail": err}, status=400)
        ok, failed = [], []
        for i, ev in enumerate(events):
            data, err = self.execute(ev)
            if err:
                failed.append({"event_index": i, "error": err, "metadata": {}, "pattern_id": ev["pattern_id"]})
            else:
                ok.append({"event_index": i, "data": data, "metadata": {}, "pattern_id": ev["pattern_id"]})
        return web.json_response(batch_body(len(events), ok, failed))

    async def api_health(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if not self.has_api_health:
            raise web.HTTPNotFound()
        return web.json_response(self.health_body)

    async def root_health(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.json_response(self.root_health_body)

    async def query(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        if not self.has_query:
            return web.json_response({"success": False, "error": "Validation error: Pattern not found: query"},
                                     status=404)
        return web.json_response({"success": True, "data": {"patterns": [
            {"pattern_id": pid, "pattern_version": v} for pid, v in sorted(self.nodes)]}})

    async def lineage(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        pid = request.match_info["pattern_id"]
        if pid not in {p for p, _ in self.nodes}:
            return web.json_response({"success": False, "error": f"Validation error: Pattern not found: {pid}"},
                                     status=404)
        if pid == "boom":
            return web.json_response({"detail": "Lineage tracking failed: x"}, status=500)
        return web.json_response({"success": True, "data": {"pattern_id": pid, "ancestors": [],
                                                            "query_type": request.query.get("query_type")}})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"{P}/lineage/track", self.single)
        app.router.add_post(f"{P}/lineage/track/batch", self.batch)
        app.router.add_get(f"{P}/health", self.api_health)
        app.router.add_get("/health", self.root_health)
        app.router.add_get(f"{P}/lineage/query", self.query)
        app.router.add_get(f"{P}/lineage/{{pattern_id}}", self.lineage)
        return app

    def paths(self) -> list[str]:
        return [r["path"].removeprefix(P) for r in self.requests]


def batch_body(n: int, ok: list[dict[str, Any]], failed: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "success": not failed,
        "batch_summary": {"total_events": n, "successful_events": len(ok), "failed_events": len(failed),
                          "handled_duplicates": 0, "processing_mode": "parallel",
                          "requested_processing_mode": "parallel"},
        "successful_results": ok,
        "failed_results": failed or None,
        "metadata": {"processing_time_ms": 1.0},
    }


@pytest.fixture
async def service():
    svc = FakeService()
    runner = web.AppRunner(svc.app(), shutdown_timeout=0.2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    svc.base_url = f"http://{host}:{port}"
    yield svc
    svc.release.set()
    await runner.cleanup()


@pytest.fixture
async def sink(service: FakeService):
    s = HttpSink(service.base_url, total_timeout=5, connect_timeout=1, read_timeout=4)
    await s.start()
    yield s
    await s.close()


def ev(name: str, version: int = 1, parent: str | None = None, **kw: Any) -> PatternEvent:
    return build_event(file_path=f"/tmp/pt-http/{name}.py", code=f"print({name!r}, {version})\n", version=version,
                       parent_pattern_id=parent, source="hook", occurred_at=1000.0 + version, **kw)


def invalid_modified(name: str) -> PatternEvent:
    e = ev(name, 2, parent="x")
    return msgspec.structs.replace(e, parent_pattern_ids=[])  # pattern_modified without a parent → 400


def statuses(outcomes: list[Any]) -> list[str]:
    return [o.status for o in outcomes]


# ---------------------------------------------------------------------------------------
# Batch endpoint


async def test_all_success_batch(service: FakeService, sink: HttpSink) -> None:
    events = [ev("a"), ev("b"), ev("c")]
    outcomes = await sink.deliver(events)
    assert statuses(outcomes) == ["delivered"] * 3
    assert all(o.acknowledged for o in outcomes)
    assert service.paths() == ["/lineage/track/batch"]
    body = service.requests[0]["body"]
    assert body["processing_mode"] == "parallel"
    assert [e["pattern_id"] for e in body["events"]] == [e.pattern_id for e in events]
    assert body["events"][0]["pattern_data"]["code"] == events[0].code
    assert service.requests[0]["headers"]["Content-Type"] == "application/json"


async def test_a_prepared_body_is_the_body_sent(service: FakeService, sink: HttpSink) -> None:
    v1 = ev("p")
    events = [v1, ev("p", 2, parent=v1.pattern_id), ev("q")]
    prepared = sink.prepare(events)
    assert prepared is not None
    outcomes = await sink.deliver(events, prepared)
    assert statuses(outcomes) == ["delivered"] * 3
    assert service.requests[0]["body"] == msgspec.json.decode(prepared)  # exactly what was prepared
    assert service.requests[0]["body"]["processing_mode"] == "sequential"
    assert [e["pattern_id"] for e in service.requests[0]["body"]["events"]] == [e.pattern_id for e in events]


async def test_nothing_is_prepared_for_the_single_endpoint() -> None:
    assert HttpSink("http://127.0.0.1:9", use_batch_endpoint=False).prepare([ev("a")]) is None


async def test_empty_deliver_sends_nothing(service: FakeService, sink: HttpSink) -> None:
    assert await sink.deliver([]) == []
    assert service.requests == []


async def test_already_exists_on_redelivery(service: FakeService, sink: HttpSink) -> None:
    events = [ev("a"), ev("b")]
    await sink.deliver(events)
    outcomes = await sink.deliver(events)
    assert statuses(outcomes) == ["already_exists"] * 2
    assert all(o.acknowledged for o in outcomes)


async def test_sequential_mode_for_parent_and_child(service: FakeService, sink: HttpSink) -> None:
    v1 = ev("a")
    v2 = ev("a", 2, parent=v1.pattern_id)
    outcomes = await sink.deliver([v1, v2])
    assert statuses(outcomes) == ["delivered", "delivered"]
    assert service.requests[0]["body"]["processing_mode"] == "sequential"


async def test_partial_failure_by_event_index(service: FakeService, sink: HttpSink) -> None:
    async def scripted(request: web.Request, body: Any) -> web.Response:
        ok = [{"event_index": 0, "data": {"pattern_id": "a"}},
              {"event_index": 3, "data": {"status": "already_exists"}}]
        failed = [
            {"event_index": 2, "error": "Validation error: pattern_data is invalid"},
            {"event_index": 1, "error": "Validation error: Parent pattern not found: abc"},
            {"event_index": 4, "error": "Tracking operation timed out"},
            {"event_index": 5, "error": "something odd"},
            {"event_index": 99, "error": "ignored: out of range"},
        ]  # index 6 is in neither list
        return web.json_response(batch_body(7, ok, failed))

    service.batch_handler = scripted
    outcomes = await sink.deliver([ev(str(i)) for i in range(7)])
    assert statuses(outcomes) == ["delivered", "retryable", "permanent", "already_exists", "retryable",
                                  "retryable", "retryable"]
    assert [o.error_class for o in outcomes] == [None, "parent_missing", "validation", None, "server_error",
                                                 "server_error", "incomplete_response"]
    assert outcomes[2].reason == "Validation error: pattern_data is invalid"


async def test_batch_400_isolates_the_bad_event(service: FakeService) -> None:
    calls: list[tuple[str, str, int | None, str | None, int]] = []
    sink = HttpSink(service.base_url, on_request=lambda m, p, s, d, e, r: calls.append((m, p, s, e, r)))
    async with sink:
        outcomes = await sink.deliver([ev("a"), invalid_modified("b"), ev("c")])
    assert statuses(outcomes) == ["delivered", "permanent", "delivered"]
    bad = outcomes[1]
    assert bad.http_status == 400 and bad.error_class == "validation"
    assert "requires at least one parent" in bad.reason
    assert service.paths() == ["/lineage/track/batch"] + ["/lineage/track"] * 3
    assert calls[0] == ("POST", f"{P}/lineage/track/batch", 400, "http_400", 0)
    assert {c[4] for c in calls[1:]} == {1}  # the isolated sends are resends
    assert sink.uses_batch_endpoint  # a 400 does not switch the endpoint off
    assert sink.last_request is not None and sink.last_request.method == "POST"


async def test_batch_422_with_index(service: FakeService, sink: HttpSink) -> None:
    async def scripted(request: web.Request, body: Any) -> web.Response | None:
        if len(body["events"]) == 3:
            return web.json_response({"detail": [{"type": "string_too_long", "loc": ["body", "events", 1, "pattern_id"],
                                                  "msg": "String should have at most 255 characters",
                                                  "input": "SECRET CODE"}]}, status=422)
        return None

    service.batch_handler = scripted
    outcomes = await sink.deliver([ev("a"), ev("b"), ev("c")])
    assert statuses(outcomes) == ["delivered", "permanent", "delivered"]
    assert outcomes[1].http_status == 422 and outcomes[1].error_class == "validation"
    assert "String should have at most 255 characters" in outcomes[1].reason
    assert "SECRET" not in outcomes[1].reason
    assert service.paths() == ["/lineage/track/batch"] * 2
    assert [e["pattern_id"] for e in service.requests[1]["body"]["events"]] == [ev("a").pattern_id, ev("c").pattern_id]


async def test_batch_422_without_index_isolates(service: FakeService, sink: HttpSink) -> None:
    async def scripted(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"detail": [{"loc": ["body", "events"], "msg": "bad"}]}, status=422)

    service.batch_handler = scripted
    outcomes = await sink.deliver([ev("a"), ev("b")])
    assert statuses(outcomes) == ["delivered", "delivered"]
    assert service.paths() == ["/lineage/track/batch", "/lineage/track", "/lineage/track"]


async def test_batch_404_falls_back_to_single_and_remembers(service: FakeService, sink: HttpSink) -> None:
    service.has_batch = False
    parent = ev("a")
    child = ev("a", 2, parent=parent.pattern_id)
    outcomes = await sink.deliver([child, parent, ev("b")])  # child listed first: sent after its parent
    assert statuses(outcomes) == ["delivered"] * 3
    assert service.paths() == ["/lineage/track/batch"] + ["/lineage/track"] * 3
    sent = [r["body"]["pattern_id"] for r in service.requests[1:]]
    assert sent.index(parent.pattern_id) < sent.index(child.pattern_id)
    assert not sink.uses_batch_endpoint

    service.requests.clear()
    outcomes = await sink.deliver([ev("c"), ev("d")])
    assert statuses(outcomes) == ["delivered"] * 2
    assert service.paths() == ["/lineage/track"] * 2


@pytest.mark.parametrize("header", ["2", "http-date"])
async def test_batch_429_retry_after(service: FakeService, sink: HttpSink, header: str) -> None:
    value = header if header != "http-date" else email.utils.formatdate(time.time() + 2.5, usegmt=True)

    async def scripted(request: web.Request, body: Any) -> web.Response:
        return web.json_response({"detail": "Rate limit exceeded"}, status=429, headers={"Retry-After": value})

    service.batch_handler = scripted
    outcomes = await sink.deliver([ev("a"), ev("b")])
    assert statuses(outcomes) == ["retryable"] * 2
    for o in outcomes:
        assert o.http_status == 429 and o.error_class == "http_429"
        assert o.retry_after is not None and abs(o.retry_after - 2) <= 1.1
    assert service.paths() == ["/lineage/track/batch"]  # no isolation on 429


async def test_batch_503_and_auth_are_retryable_without_isolation(service: FakeService, sink: HttpSink,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    status = 503

    async def scripted(request: web.Request, body: Any) -> web.Response:
        detail = "Database connection not available" if status == 503 else "Not authenticated"
        return web.json_response({"detail": detail}, status=status)

    service.batch_handler = scripted
    outcomes = await sink.deliver([ev("a"), ev("b")])
    assert [(o.status, o.http_status, o.error_class, o.retry_after) for o in outcomes] == [
        ("retryable", 503, "http_503", None)] * 2
    assert outcomes[0].reason == "Database connection not available"

    status = 401
    with caplog.at_level(logging.WARNING, logger="pattern_tracker.http"):
        await sink.deliver([ev("a")])
        outcomes = await sink.deliver([ev("a")])
    assert [(o.status, o.http_status, o.error_class) for o in outcomes] == [("retryable", 401, "auth")]
    assert sum("credentials" in r.getMessage() for r in caplog.records) == 1
    assert service.paths() == ["/lineage/track/batch"] * 3


@pytest.mark.parametrize(
    ("content_type", "body", "problem"),
    [
        ("application/json", b"not json at all", "undecodable"),
        ("text/html", b"<html><body>502 Bad Gateway</body></html>", "content type"),
        ("application/json", b'{"success": true, "batch_summary": {"total_ev', "truncated"),
        ("application/json", b'{"success": "yes"}', "Expected `bool`"),
    ],
)
async def test_garbage_200_is_bad_response(service: FakeService, sink: HttpSink, content_type: str, body: bytes,
                                           problem: str) -> None:
    async def scripted(request: web.Request, _: Any) -> web.Response:
        return web.Response(body=body, content_type=content_type)

    service.batch_handler = scripted
    outcomes = await sink.deliver([ev("a"), ev("b")])
    assert statuses(outcomes) == ["retryable"] * 2
    assert {o.error_class for o in outcomes} == {"bad_response"}
    assert problem in outcomes[0].reason
    assert "html" not in outcomes[0].reason.replace("text/html", "")  # names the problem, not the body


async def test_oversized_body_is_bad_response(service: FakeService) -> None:
    async def scripted(request: web.Request, _: Any) -> web.Response:
        return web.json_response(batch_body(1, [{"event_index": 0, "data": {"pad": "x" * 5000}}], []))

    service.batch_handler = scripted
    async with HttpSink(service.base_url, max_response_bytes=1024) as sink:
        outcomes = await sink.deliver([ev("a")])
    assert outcomes[0].status == "retryable" and outcomes[0].error_class == "bad_response"
    assert "larger than 1024 bytes" in outcomes[0].reason


# ---------------------------------------------------------------------------------------
# Transport problems


async def test_connection_refused_is_retryable() -> None:
    port = free_port()
    async with HttpSink(f"http://127.0.0.1:{port}", connect_timeout=1, total_timeout=2) as sink:
        outcomes = await sink.deliver([ev("a"), ev("b")])
        health = await sink.health()
        with pytest.raises(SinkError, match="lineage/x"):
            await sink.get_lineage("x")
    assert [(o.status, o.error_class) for o in outcomes] == [("retryable", "connection")] * 2
    assert health.available is False and health.status == "unreachable"
    assert health.detail == f"connection refused at 127.0.0.1:{port}"
    assert outcomes[0].reason == f"connection refused at 127.0.0.1:{port}"


async def test_hanging_server_times_out(service: FakeService) -> None:
    async def hang(request: web.Request, _: Any) -> web.Response:
        await asyncio.wait_for(service.release.wait(), 5)
        return web.json_response({})

    service.batch_handler = hang
    calls: list[Any] = []
    sink = HttpSink(service.base_url, connect_timeout=0.2, read_timeout=1, total_timeout=0.3,
                    on_request=lambda *a: calls.append(a))
    async with sink:
        started = time.monotonic()
        outcomes = await sink.deliver([ev("a"), ev("b")])
        assert time.monotonic() - started < 2
    assert [(o.status, o.error_class) for o in outcomes] == [("retryable", "timeout")] * 2
    assert calls[0][2] is None and calls[0][4] == "timeout"


async def test_sock_read_timeout_is_timeout_too(service: FakeService) -> None:
    async def hang(request: web.Request, _: Any) -> web.Response:
        await asyncio.wait_for(service.release.wait(), 5)
        return web.json_response({})

    service.batch_handler = hang
    async with HttpSink(service.base_url, read_timeout=0.2, total_timeout=3) as sink:
        outcomes = await sink.deliver([ev("a")])
    assert [(o.status, o.error_class) for o in outcomes] == [("retryable", "timeout")]


# ---------------------------------------------------------------------------------------
# Single endpoint


@pytest.mark.parametrize(
    ("status", "detail", "headers", "expected"),
    [
        (400, "Validation error: Parent pattern not found: p", {}, ("retryable", "parent_missing")),
        (400, "Invalid edge_type", {}, ("permanent", "validation")),
        (404, "Not Found", {}, ("retryable", "endpoint_missing")),  # a wrong base URL must not dead-letter
        (401, "Not authenticated", {}, ("retryable", "auth")),
        (403, "Forbidden", {}, ("retryable", "auth")),
        (418, "teapot", {}, ("permanent", "http_418")),
        (429, "Rate limit exceeded", {"Retry-After": "7"}, ("retryable", "http_429")),
        (502, "bad gateway", {}, ("retryable", "http_502")),
        (504, "Tracking operation timed out", {}, ("retryable", "http_504")),
        (507, "insufficient storage", {}, ("retryable", "http_507")),
    ],
)
async def test_single_endpoint_statuses(service: FakeService, status: int, detail: str, headers: dict[str, str],
                                        expected: tuple[str, str]) -> None:
    async def scripted(request: web.Request, _: Any) -> web.Response:
        return web.json_response({"detail": detail}, status=status, headers=headers)

    service.single_handler = scripted
    async with HttpSink(service.base_url, use_batch_endpoint=False) as sink:
        [outcome] = await sink.deliver([ev("a")])
    assert (outcome.status, outcome.error_class) == expected
    assert outcome.http_status == status and outcome.reason == detail
    assert outcome.retry_after == (7.0 if headers else None)
    assert service.paths() == ["/lineage/track"]


async def test_single_endpoint_422_reason_and_truncation(service: FakeService) -> None:
    long = "Validation error: " + "z" * 1000

    async def scripted(request: web.Request, body: Any) -> web.Response:
        if body["pattern_id"] == ev("a").pattern_id:
            return web.json_response({"detail": long}, status=400)
        return web.json_response({"detail": [{"type": "missing", "loc": ["body", "event_type"],
                                              "msg": "Field required", "input": {"code": "SECRET"}}]}, status=422)

    service.single_handler = scripted
    async with HttpSink(service.base_url, use_batch_endpoint=False) as sink:
        first, second = await sink.deliver([ev("a"), ev("b")])
    assert first.status == "permanent" and len(first.reason) == 300
    assert second.status == "permanent" and second.reason == "event_type: Field required"


async def test_single_already_exists_and_parent_order(service: FakeService) -> None:
    async with HttpSink(service.base_url, use_batch_endpoint=False, max_connections=2) as sink:
        v1 = ev("a")
        v2 = ev("a", 2, parent=v1.pattern_id)
        v3 = ev("a", 3, parent=v2.pattern_id)
        assert statuses(await sink.deliver([v3, v2, v1, ev("b")])) == ["delivered"] * 4
        assert statuses(await sink.deliver([v1])) == ["already_exists"]


async def test_bearer_token_and_user_agent(service: FakeService) -> None:
    async with HttpSink(service.base_url + P + "/", token="s3cret-token") as sink:
        assert "s3cret" not in repr(sink)
        await sink.deliver([ev("a")])
        await sink.health()
    for req in service.requests:
        assert req["headers"]["Authorization"] == "Bearer s3cret-token"
        assert req["headers"]["User-Agent"] == f"pattern-tracker/{__version__}"
    assert service.paths() == ["/lineage/track/batch", "/health"]  # prefix not doubled

    service.requests.clear()
    async with HttpSink(service.base_url) as sink:
        await sink.deliver([ev("b")])
    assert "Authorization" not in service.requests[0]["headers"]

    service.requests.clear()
    with_creds = service.base_url.replace("http://", "http://alice:pw-123@")
    async with HttpSink(with_creds) as sink:
        assert "pw-123" not in repr(sink) and "pw-123" not in sink.api_url
        await sink.deliver([ev("c")])
    assert service.requests[0]["headers"]["Authorization"].startswith("Basic ")
    with pytest.raises(ValueError) as info:
        HttpSink(with_creds, token="t")
    assert "pw-123" not in str(info.value)


def test_rejects_non_http_urls_without_leaking_credentials() -> None:
    with pytest.raises(ValueError, match="ftp://") as info:
        HttpSink("ftp://user:hunter2@example.com/x")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError):
        HttpSink("localhost:8053")
    sink = HttpSink("https://example.com:8443/svc/api/pattern-traceability")
    assert sink.api_url == "https://example.com:8443/svc/api/pattern-traceability"
    assert sink.root_url == "https://example.com:8443/svc"


# ---------------------------------------------------------------------------------------
# Health and queries


@pytest.mark.parametrize(
    ("body", "available"),
    [
        ({"status": "healthy", "components": {"lineage_tracker": "operational"}}, True),
        ({"status": "degraded", "components": {"lineage_tracker": "database_unavailable"}}, False),
        ({"status": "degraded", "components": {"lineage_tracker": "operational"}}, True),
        ({"status": "healthy", "components": {"lineage_tracker": "error: boom"}}, False),
        ({"status": "unhealthy"}, False),
    ],
)
async def test_health_judged_from_body(service: FakeService, sink: HttpSink, body: dict[str, Any],
                                       available: bool) -> None:
    service.health_body = body
    health = await sink.health()
    assert health.available is available
    assert health.status == body["status"]
    assert health.components == body.get("components", {})
    if not available:
        assert health.detail


async def test_health_falls_back_to_root(service: FakeService, sink: HttpSink) -> None:
    service.has_api_health = False
    service.root_health_body = {"status": "healthy", "service_version": "1"}
    assert (await sink.health()).available
    service.root_health_body = {"status": "unhealthy"}
    assert not (await sink.health()).available
    assert service.paths() == ["/health", "/health"] * 2
    assert [r["path"] for r in service.requests][:2] == [f"{P}/health", "/health"]


async def test_get_lineage_and_query_file(service: FakeService, sink: HttpSink) -> None:
    a = ev("a")
    await sink.deliver([a])
    data = await sink.get_lineage(a.pattern_id, "descendants")
    assert data == {"pattern_id": a.pattern_id, "ancestors": [], "query_type": "descendants"}
    assert await sink.get_lineage("unknown/with slash") is None
    assert service.requests[-1]["path"] == f"{P}/lineage/unknown/with slash"  # one segment (%2F), 404 not 405
    service.nodes.add(("boom", "1"))
    with pytest.raises(SinkError, match="HTTP 500"):
        await sink.get_lineage("boom")

    rows = await sink.query_file("/tmp/pt-http/a.py", limit=5)
    assert rows == sorted([{"pattern_id": a.pattern_id, "pattern_version": "1"},
                           {"pattern_id": "boom", "pattern_version": "1"}], key=lambda r: r["pattern_id"])
    assert service.requests[-1]["query"] == {"file_path": "/tmp/pt-http/a.py", "limit": "5"}
    service.has_query = False
    assert await sink.query_file("/tmp/pt-http/a.py") is None


# ---------------------------------------------------------------------------------------
# Pure parts


def test_classify_error() -> None:
    assert classify_error("Validation error: Parent pattern not found: x") == ("retryable", "parent_missing")
    assert classify_error("Tracking operation timed out") == ("retryable", "server_error")
    assert classify_error("Database connection not available") == ("retryable", "server_error")
    assert classify_error("Lineage tracking failed: deadlock") == ("retryable", "server_error")
    assert classify_error("Validation error: bad") == ("permanent", "validation")
    assert classify_error("pattern_data is required") == ("permanent", "validation")
    assert classify_error("Invalid event_type") == ("permanent", "validation")
    assert classify_error("who knows") == ("retryable", "server_error")


def test_retry_after_seconds() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(b"3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("-5") == 0.0


def test_retry_after_http_dates() -> None:
    now = 1_700_000_000.0
    in_two = email.utils.formatdate(now + 2, usegmt=True)
    assert parse_retry_after(in_two, now=now) == 2.0
    assert parse_retry_after(email.utils.formatdate(now - 3600, usegmt=True), now=now) == 0.0  # past → 0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT") == 0.0
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now=784111777.0 - 10) == 10.0  # RFC 850
    assert parse_retry_after("Sun Nov  6 08:49:37 1994", now=784111777.0 - 1) == 1.0  # asctime
    real = parse_retry_after(email.utils.formatdate(time.time() + 2, usegmt=True))
    assert real is not None and 0.5 <= real <= 2.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "2 seconds", "1e3", "nan", "inf", "0x10",
                                   "Mon, 99 Foo 2024 25:61:61 GMT", "Sun, 06 Nov"])
def test_retry_after_garbage(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_huge_values() -> None:
    assert parse_retry_after("99999999999") == MAX_RETRY_AFTER
    assert parse_retry_after("9" * 400) == MAX_RETRY_AFTER
    assert parse_retry_after("9" * 400, maximum=None) is None  # infinite: not a usable answer
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == MAX_RETRY_AFTER
    assert parse_retry_after("100", maximum=10) == 10.0
