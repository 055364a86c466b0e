"""HttpSink — delivers PatternEvents to the Phase 4 lineage service (the Phase 4 API contract,
docs/phase4-contract.md).

One aiohttp ``ClientSession`` per sink. ``deliver`` returns exactly one :class:`Outcome` per
event, in order, and never raises for delivery problems:

* the batch endpoint by default; a 200 batch answer is mapped per ``event_index``
  (a failed event's error string is classified: parent missing / transient → retryable,
  validation → permanent; an index in neither list → retryable ``incomplete_response``);
* batch 400 (all-or-nothing validation) → each event is resent alone on the single endpoint;
* batch 422 → the indexes named by ``loc: ["body", "events", i, ...]`` are permanent, the rest
  are resent as a smaller batch (no parsable index → per-event isolation as for 400);
* batch 404/405 → the service lacks the batch endpoint: remembered, single endpoint from now on;
  a 404/405 on the single endpoint means a wrong base URL: retryable (endpoint_missing), not dead-lettered;
* batch 401/403/408/429/5xx → every event retryable with the same status / Retry-After;
* connection errors → ``connection``, timeouts → ``timeout``; an undecodable or oversized
  success body → ``bad_response``.

Events sent one by one go in *waves*: events whose parents are not in the same set first,
their children after them (concurrently within a wave, bounded by ``max_connections``),
so a child never overtakes its parent.

Classification lives in :mod:`.http_errors`, the reading of answers in :mod:`.http_responses`.
Nothing here logs code contents, request bodies or the token (logger ``pattern_tracker.http``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import yarl

from pattern_tracker import __version__
from pattern_tracker.model.api import PREFIX
from pattern_tracker.model.events import PatternEvent, json_encoder, to_batch_request, to_track_request
from pattern_tracker.model.outcome import Outcome, ServiceHealth
from pattern_tracker.sinks.http_errors import TransportError, classify_error, safe_url, transport_error, truncate
from pattern_tracker.sinks.http_responses import (
    RETRYABLE_STATUSES,
    Response,
    batch_outcomes,
    invalid_event_indexes,
    single_outcome,
    status_outcome,
)

__all__ = [
    "MAX_RESPONSE_BYTES",
    "HttpSink",
    "OnRequest",
    "RequestInfo",
    "SinkError",
    "classify_error",
]

log = logging.getLogger("pattern_tracker.http")

MAX_RESPONSE_BYTES = 16 * 1024 * 1024

# on_request(method, url_path, status, duration_s, error_class, resend_count)
OnRequest = Callable[[str, str, "int | None", float, "str | None", int], None]


class SinkError(Exception):
    """A query (get_lineage / query_file) could not be answered; the message is one line."""


class RequestInfo(msgspec.Struct, kw_only=True, frozen=True):
    """What the last HTTP request did (also passed, field by field, to ``on_request``)."""

    method: str
    url_path: str
    status: int | None
    duration_s: float
    error_class: str | None = None
    resend_count: int = 0




def _waves(events: Sequence[PatternEvent]) -> list[list[int]]:
    """Indexes grouped so that every event comes after the events of its parents in the same set."""
    remaining = list(range(len(events)))
    waves: list[list[int]] = []
    while remaining:
        pending_ids = {events[i].pattern_id for i in remaining}
        wave = [
            i
            for i in remaining
            if not any(p in pending_ids and p != events[i].pattern_id for p in events[i].parent_pattern_ids)
        ]
        if not wave:  # a cycle (cannot happen with real data): send the rest together
            wave = remaining
        waves.append(wave)
        in_wave = set(wave)
        remaining = [i for i in remaining if i not in in_wave]
    return waves


# ---------------------------------------------------------------------------------------


class HttpSink:
    """Client of the Phase 4 lineage API. See the module docstring for the delivery rules."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify_tls: bool = True,
        connect_timeout: float = 2,
        read_timeout: float = 10,
        total_timeout: float = 15,
        use_batch_endpoint: bool = True,
        max_connections: int = 8,
        on_request: OnRequest | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        safe = safe_url(base_url)
        try:
            url = yarl.URL(base_url.strip())
        except (ValueError, TypeError):
            raise ValueError(f"invalid lineage service URL: {safe!r}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"lineage service URL must be http(s)://host[:port]: {safe!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be ≥ 1")
        self._basic_auth: str | None = None  # "Basic ..." from user:password in the URL
        if url.user is not None or url.password is not None:
            if token:
                raise ValueError(f"give either a token or credentials in the URL, not both: {safe!r}")
            pair = f"{url.user or ''}:{url.password or ''}".encode()
            self._basic_auth = "Basic " + base64.b64encode(pair).decode("ascii")
        url = url.with_user(None).with_query(None).with_fragment(None)
        path = url.path.rstrip("/")
        if path.endswith(PREFIX):
            path = path[: -len(PREFIX)]
        root = url.with_path(path or "/")
        self.root_url = str(root).rstrip("/")
        self.api_url = self.root_url + PREFIX
        # The delivery endpoints, parsed once (yarl parsing a URL per request showed in profiles).
        self._batch_url = yarl.URL(f"{self.api_url}/lineage/track/batch", encoded=True)
        self._track_url = yarl.URL(f"{self.api_url}/lineage/track", encoded=True)
        self.server_address: str = url.host
        self.server_port: int | None = url.port
        self._token = token or None
        self._verify_tls = verify_tls
        self._timeout = aiohttp.ClientTimeout(
            total=total_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._use_batch = use_batch_endpoint
        self._max_connections = max_connections
        self._max_body = max_response_bytes
        self.on_request = on_request
        self.last_request: RequestInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sem: asyncio.Semaphore | None = None
        self._auth_warned = False
        self._endpoint_warned = False

    def __repr__(self) -> str:  # never shows the token or URL credentials
        return f"HttpSink({self.api_url!r}, batch={self._use_batch})"

    @property
    def uses_batch_endpoint(self) -> bool:
        """False once the service answered 404/405 on the batch endpoint (or when configured off)."""
        return self._use_batch

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is not None and not self._session.closed:
            return
        headers = {"User-Agent": f"pattern-tracker/{__version__}", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._basic_auth:
            headers["Authorization"] = self._basic_auth
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=True if self._verify_tls else False)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=headers,
            raise_for_status=False,
        )
        self._sem = asyncio.Semaphore(self._max_connections)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> HttpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- one request -------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str | yarl.URL,
        *,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
        resend_count: int = 0,
    ) -> Response:
        """Send one request and read its body (≤ the limit). Raises TransportError only."""
        if self._session is None or self._session.closed:
            await self.start()
        assert self._session is not None
        target = url if isinstance(url, yarl.URL) else yarl.URL(url, encoded=True)
        started = time.perf_counter()
        status: int | None = None
        error_class: str | None = None
        try:
            async with self._session.request(
                method,
                target,
                data=body,
                params=params,
                headers={"Content-Type": "application/json"} if body is not None else None,
                allow_redirects=False,
            ) as resp:
                status = resp.status
                if status < 300:
                    self._auth_warned = False  # warn again if the credentials break later
                raw = await self._read_limited(resp)
                if raw is None:
                    error_class = "bad_response"
                elif status >= 400:
                    error_class = f"http_{status}"
                return Response(
                    status=resp.status,
                    reason=resp.reason or "",
                    content_type=resp.content_type,
                    headers={"Retry-After": ra} if (ra := resp.headers.get("Retry-After")) else {},
                    body=raw,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            err = transport_error(exc, target)
            error_class = err.error_class
            raise err from None
        finally:
            duration = time.perf_counter() - started
            self._record(method, target.path, status, duration, error_class, resend_count)

    async def _read_limited(self, resp: aiohttp.ClientResponse) -> bytes | None:
        if resp.content_length is not None and resp.content_length > self._max_body:
            return None
        buf = bytearray()
        async for chunk in resp.content.iter_any():
            buf += chunk
            if len(buf) > self._max_body:
                return None
        return bytes(buf)

    def _record(
        self, method: str, path: str, status: int | None, duration: float, error_class: str | None, resend: int
    ) -> None:
        self.last_request = RequestInfo(
            method=method,
            url_path=path,
            status=status,
            duration_s=duration,
            error_class=error_class,
            resend_count=resend,
        )
        if self.on_request is not None:
            try:
                self.on_request(method, path, status, duration, error_class, resend)
            except Exception:  # telemetry must never break delivery
                log.debug("on_request hook failed", exc_info=True)

    # -- deliver -----------------------------------------------------------------------

    def prepare(self, events: Sequence[PatternEvent]) -> bytes | None:
        """The batch request's body, encoded now (``sinks.base.Preparing``: the pipeline calls this
        as it forms the batch); None when events go one by one, or cannot be encoded here (then
        ``deliver`` encodes them and says why)."""
        if not self._use_batch or not events:
            return None
        try:
            return json_encoder.encode(to_batch_request(list(events)))
        except Exception:  # noqa: BLE001 - deliver will meet it again and turn it into outcomes
            return None

    async def deliver(self, events: Sequence[PatternEvent], prepared: bytes | None = None) -> list[Outcome]:
        """Exactly one Outcome per event, same order. Never raises for delivery problems.
        ``prepared``: the body ``prepare`` encoded for exactly these events."""
        batch = list(events)
        if not batch:
            return []
        try:
            if self._use_batch:
                outcomes = await self._deliver_batch(batch, resend=0, body=prepared)
            else:
                outcomes = await self._deliver_singles(batch, resend=0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not lose events: all retryable
            log.error("http sink: unexpected %s while delivering %d events", type(exc).__name__, len(batch),
                      exc_info=True)
            outcome = Outcome(status="retryable", reason=f"internal error: {type(exc).__name__}",
                              error_class="internal")
            return [outcome] * len(batch)
        if len(outcomes) != len(batch):  # pragma: no cover - guarded by construction
            raise AssertionError("one outcome per event")
        return outcomes

    async def _deliver_batch(self, events: list[PatternEvent], *, resend: int, body: bytes | None = None) -> list[Outcome]:
        n = len(events)
        if body is None:
            body = json_encoder.encode(to_batch_request(events))
        try:
            resp = await self._request("POST", self._batch_url, body=body, resend_count=resend)
        except TransportError as err:
            return [Outcome(status="retryable", reason=err.reason, error_class=err.error_class)] * n
        status = resp.status

        if 200 <= status < 300:
            return batch_outcomes(resp, n, self._max_body)
        if status in (404, 405):
            if self._use_batch:
                log.warning("lineage service has no batch endpoint (HTTP %d): using %s/lineage/track from now on",
                            status, PREFIX)
            self._use_batch = False
            return await self._deliver_singles(events, resend=resend + 1)
        if status == 422:
            return await self._split_422(events, resp, resend=resend)
        if status in (401, 403) or status in RETRYABLE_STATUSES or not 400 <= status < 500:
            # Not about any one event (auth, overload, server down, redirect): all retryable alike.
            return [self._status_outcome(resp)] * n
        # 400 (all-or-nothing validation) and any other 4xx: we don't know which event is at
        # fault — isolate, every event gets its own answer from the single endpoint.
        log.info("batch of %d refused (HTTP %d): isolating events", n, status)
        return await self._deliver_singles(events, resend=resend + 1)

    async def _split_422(self, events: list[PatternEvent], resp: Response, *, resend: int) -> list[Outcome]:
        n = len(events)
        bad = invalid_event_indexes(resp, n)
        if bad is None:
            log.info("batch of %d refused (HTTP 422, no event index): isolating events", n)
            return await self._deliver_singles(events, resend=resend + 1)

        outcomes: list[Outcome | None] = [None] * n
        for idx, msgs in bad.items():
            outcomes[idx] = Outcome(status="permanent", reason=truncate("; ".join(msgs)), http_status=422,
                                    error_class="validation")
        rest = [i for i in range(n) if outcomes[i] is None]
        log.info("batch of %d refused (HTTP 422): %d invalid, resending %d", n, len(bad), len(rest))
        if rest:
            again = await self._deliver_batch([events[i] for i in rest], resend=resend + 1)
            for i, outcome in zip(rest, again, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    async def _deliver_singles(self, events: list[PatternEvent], *, resend: int) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(events)
        sem = self._sem or asyncio.Semaphore(self._max_connections)

        async def one(i: int) -> None:
            async with sem:
                outcomes[i] = await self._send_single(events[i], resend=resend)

        for wave in _waves(events):
            if len(wave) == 1:
                await one(wave[0])
            else:
                await asyncio.gather(*(one(i) for i in wave))
        return [o for o in outcomes if o is not None]

    async def _send_single(self, event: PatternEvent, *, resend: int) -> Outcome:
        body = json_encoder.encode(to_track_request(event))
        try:
            resp = await self._request("POST", self._track_url, body=body, resend_count=resend)
        except TransportError as err:
            return Outcome(status="retryable", reason=err.reason, error_class=err.error_class)
        if 200 <= resp.status < 300:
            return single_outcome(resp, self._max_body)
        return self._status_outcome(resp)

    def _status_outcome(self, resp: Response) -> Outcome:
        """:func:`~.http_responses.status_outcome`, warning once about refused credentials and a missing endpoint."""
        outcome = status_outcome(resp)
        if outcome.error_class == "auth" and not self._auth_warned:
            self._auth_warned = True
            log.warning("lineage service refused our credentials (HTTP %d): events kept for retry; "
                        "check the token", resp.status)
        elif outcome.error_class == "endpoint_missing" and not self._endpoint_warned:
            self._endpoint_warned = True
            log.error("lineage service has no track endpoint (HTTP %d) at %s: check api.url; events kept for retry",
                      resp.status, self.api_url)
        return outcome

    # -- health and queries ------------------------------------------------------------

    async def health(self) -> ServiceHealth:
        """Availability judged from the health body (both endpoints always answer 200)."""
        try:
            resp = await self._request("GET", f"{self.api_url}/health")
            if resp.status in (404, 405):
                resp = await self._request("GET", f"{self.root_url}/health")
        except TransportError as err:
            return ServiceHealth(available=False, status="unreachable", detail=err.reason)
        if resp.status != 200:
            return ServiceHealth(available=False, status="unhealthy", detail=resp.detail())
        obj = resp.json_object()
        if obj is None:
            return ServiceHealth(available=False, status="unhealthy", detail="health body is not a JSON object")
        status = str(obj.get("status") or "unknown")
        raw_components = obj.get("components")
        components = (
            {str(k): str(v) for k, v in raw_components.items()} if isinstance(raw_components, dict) else {}
        )
        tracker = components.get("lineage_tracker")
        if status == "healthy":
            available = tracker is None or tracker == "operational"
        elif status == "degraded":
            available = tracker == "operational"
        else:
            available = False
        detail = "" if available else (f"lineage_tracker: {tracker}" if tracker else f"status: {status}")
        return ServiceHealth(available=available, status=status, detail=truncate(detail), components=components)

    async def get_lineage(self, pattern_id: str, query_type: str = "ancestry") -> dict[str, Any] | None:
        """The ``data`` of GET /lineage/{pattern_id}; None when the pattern is unknown (404)."""
        url = f"{self.api_url}/lineage/{quote(pattern_id, safe='')}"
        obj = await self._query(url, {"query_type": query_type}, allow_missing=(404,))
        if obj is None:
            return None
        data = obj.get("data")
        if not isinstance(data, dict):
            raise SinkError(f"GET lineage/{pattern_id}: response has no data object")
        return data

    async def query_file(self, file_path: str, limit: int = 100) -> list[dict[str, Any]] | None:
        """Our ``serve`` extension GET /lineage/query; None when the service lacks it (404/405)."""
        obj = await self._query(
            f"{self.api_url}/lineage/query", {"file_path": file_path, "limit": str(int(limit))},
            allow_missing=(404, 405),
        )
        if obj is None:
            return None
        data = obj.get("data", obj)
        if isinstance(data, dict):
            data = next((v for k in ("patterns", "results", "nodes", "items") if isinstance(v := data.get(k), list)),
                        None)
        if not isinstance(data, list):
            raise SinkError("GET lineage/query: response holds no list of patterns")
        return [item for item in data if isinstance(item, dict)]

    async def _query(self, url: str, params: dict[str, str], *, allow_missing: tuple[int, ...]) -> dict[str, Any] | None:
        path = url[len(self.api_url):].lstrip("/")
        try:
            resp = await self._request("GET", url, params=params)
        except TransportError as err:
            raise SinkError(f"GET {path}: {err.reason} ({self.root_url})") from None
        if resp.status in allow_missing:
            return None
        if resp.status != 200:
            raise SinkError(f"GET {path}: HTTP {resp.status}: {resp.detail()}")
        obj = resp.json_object()
        if obj is None:
            raise SinkError(f"GET {path}: response is not a JSON object ({resp.content_type})")
        return obj
