"""HttpSink — delivers PatternEvents to the Phase 4 lineage service (shared/PHASE4_API.md).

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

Nothing here logs code contents, request bodies or the token (logger ``pattern_tracker.http``).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import msgspec
import yarl

from pattern_tracker.model.api import PREFIX
from pattern_tracker import __version__
from pattern_tracker.model.events import PatternEvent, json_encoder, to_batch_request, to_track_request
from pattern_tracker.model.events import batch_response_decoder as _batch_decoder
from pattern_tracker.model.outcome import ALREADY_EXISTS, DELIVERED, Outcome, ServiceHealth
from pattern_tracker.sinks.retry_after import parse_retry_after

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
MAX_REASON = 300

# Statuses that say "try again later" (the body, if any, is informational).
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

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


# ---------------------------------------------------------------------------------------
# Classification (pure)


def classify_error(text: str) -> tuple[Literal["retryable", "permanent"], str]:
    """Classify a per-event error string of a batch answer (or a 200 single answer with success=false).

    Returns ``(status, error_class)``.
    """
    if "Parent pattern not found" in text:
        return "retryable", "parent_missing"
    lowered = text.lower()
    if (
        "timed out" in lowered
        or "database connection not available" in lowered
        or "lineage tracking failed" in lowered
    ):
        return "retryable", "server_error"
    if "validation error" in lowered or "invalid" in lowered or "required" in lowered:
        return "permanent", "validation"
    return "retryable", "server_error"


def _truncate(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _loc_text(loc: Any) -> str:
    if not isinstance(loc, list):
        return ""
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts)


def _detail_items_text(items: list[Any]) -> str:
    """FastAPI 422 detail list → "field: msg; ..." (never the ``input`` — it may hold code)."""
    out = []
    for item in items:
        if isinstance(item, dict):
            msg = str(item.get("msg", "")) or str(item.get("type", "invalid"))
            where = _loc_text(item.get("loc"))
            out.append(f"{where}: {msg}" if where else msg)
    return "; ".join(out)


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


class _TrackResponse(msgspec.Struct):
    # Required: a 2xx answer that does not say "success" (``{}``, another service's JSON) is not
    # an acknowledgement — it is a bad_response, retried, never removed from the spool.
    success: bool
    data: dict[str, Any] | None = None
    error: str | None = None


_track_decoder = msgspec.json.Decoder(_TrackResponse)
_any_decoder = msgspec.json.Decoder()


class _Response(msgspec.Struct):
    status: int
    reason: str
    content_type: str
    headers: dict[str, str]
    body: bytes | None  # None when larger than the limit

    def json_object(self) -> dict[str, Any] | None:
        if self.body is None or not _is_json(self.content_type):
            return None
        try:
            value = _any_decoder.decode(self.body)
        except msgspec.DecodeError:
            return None
        return value if isinstance(value, dict) else None

    def detail(self) -> str:
        """The service's error text (``detail`` / ``error``), or the status line."""
        obj = self.json_object()
        if obj is not None:
            for key in ("detail", "error", "message"):
                value = obj.get(key)
                if isinstance(value, str) and value:
                    return _truncate(value)
                if isinstance(value, list) and value:
                    return _truncate(_detail_items_text(value))
        elif self.body and self.content_type == "text/plain":
            return _truncate(self.body[:4096].decode("utf-8", "replace"))
        return f"HTTP {self.status} {self.reason}".strip()

    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class _TransportError(Exception):
    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


def _host_port(host: str | None, port: int | None) -> str:
    host = host or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _transport_error(exc: BaseException, target: yarl.URL | None = None) -> _TransportError:
    """The error class and a plain reason naming the address (``connection refused at HOST:PORT``).

    Why not ``str(exc)``: aiohttp's text (``Cannot connect to host h:p ssl:default [Connect call
    failed ('h', p)]``) repeats itself and leaks its internals into ``health`` and dead letters.
    """
    name = type(exc).__name__
    where = _host_port(target.host, target.port) if target is not None else "the service"
    # aiohttp's total timeout raises plain TimeoutError; its sock_* timeouts raise
    # ServerTimeoutError, which is both a ClientError and a TimeoutError.
    if isinstance(exc, TimeoutError):
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return _TransportError("timeout", f"timed out connecting to {where}")
        if isinstance(exc, aiohttp.SocketTimeoutError):
            return _TransportError("timeout", f"timed out waiting for an answer from {where}")
        return _TransportError("timeout", f"timed out talking to {where}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = _host_port(exc.host, exc.port)
        os_error = exc.os_error
        if isinstance(exc, aiohttp.ClientSSLError):
            return _TransportError("connection", _truncate(f"TLS failed with {where}: {os_error}"))
        if isinstance(exc, getattr(aiohttp, "ClientConnectorDNSError", ())) or isinstance(os_error, socket.gaierror):
            return _TransportError("connection", f"cannot resolve host {exc.host} (DNS lookup failed)")
        if isinstance(os_error, ConnectionRefusedError):
            return _TransportError("connection", f"connection refused at {where}")
        why = (os_error.strerror or str(os_error)) if isinstance(os_error, OSError) else str(os_error)
        return _TransportError("connection", _truncate(f"cannot connect to {where}: {why.lower()}"))
    if isinstance(exc, ConnectionResetError) or (isinstance(exc, OSError) and exc.errno == errno.ECONNRESET):
        return _TransportError("connection", f"connection reset by {where}")
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        msg = str(exc)
        return _TransportError("connection", _truncate(f"{name}: {msg}" if msg else name))
    return _TransportError("client_error", _truncate(f"{name}: {exc}"))


def _safe_url(url: str) -> str:
    """``url`` without user:password (for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
        safe = _safe_url(base_url)
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
        url: str,
        *,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
        resend_count: int = 0,
    ) -> _Response:
        """Send one request and read its body (≤ the limit). Raises _TransportError only."""
        if self._session is None or self._session.closed:
            await self.start()
        assert self._session is not None
        target = yarl.URL(url, encoded=True)
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
                return _Response(
                    status=resp.status,
                    reason=resp.reason or "",
                    content_type=resp.content_type,
                    headers={"Retry-After": ra} if (ra := resp.headers.get("Retry-After")) else {},
                    body=raw,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            err = _transport_error(exc, target)
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

    async def deliver(self, events: Sequence[PatternEvent]) -> list[Outcome]:
        """Exactly one Outcome per event, same order. Never raises for delivery problems."""
        batch = list(events)
        if not batch:
            return []
        try:
            if self._use_batch:
                outcomes = await self._deliver_batch(batch, resend=0)
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

    async def _deliver_batch(self, events: list[PatternEvent], *, resend: int) -> list[Outcome]:
        n = len(events)
        body = json_encoder.encode(to_batch_request(events))
        try:
            resp = await self._request("POST", f"{self.api_url}/lineage/track/batch", body=body, resend_count=resend)
        except _TransportError as err:
            return [Outcome(status="retryable", reason=err.reason, error_class=err.error_class)] * n
        status = resp.status

        if 200 <= status < 300:
            return self._map_batch_response(resp, n)
        if status in (404, 405):
            if self._use_batch:
                log.warning("lineage service has no batch endpoint (HTTP %d): using %s/lineage/track from now on",
                            status, PREFIX)
            self._use_batch = False
            return await self._deliver_singles(events, resend=resend + 1)
        if status == 422:
            return await self._split_422(events, resp, resend=resend)
        if status in (401, 403) or status in _RETRYABLE_STATUSES or not 400 <= status < 500:
            # Not about any one event (auth, overload, server down, redirect): all retryable alike.
            return [self._status_outcome(resp)] * n
        # 400 (all-or-nothing validation) and any other 4xx: we don't know which event is at
        # fault — isolate, every event gets its own answer from the single endpoint.
        log.info("batch of %d refused (HTTP %d): isolating events", n, status)
        return await self._deliver_singles(events, resend=resend + 1)

    async def _split_422(self, events: list[PatternEvent], resp: _Response, *, resend: int) -> list[Outcome]:
        n = len(events)
        obj = resp.json_object()
        items = obj.get("detail") if obj is not None else None
        bad: dict[int, list[str]] = {}
        parsed_all = isinstance(items, list) and bool(items)
        for item in items if isinstance(items, list) else []:
            idx = None
            loc = item.get("loc") if isinstance(item, dict) else None
            if isinstance(loc, list) and len(loc) >= 3 and loc[0] == "body" and loc[1] == "events":
                raw = loc[2]
                if isinstance(raw, int) and not isinstance(raw, bool):
                    idx = raw
                elif isinstance(raw, str) and raw.isdigit():
                    idx = int(raw)
            if idx is None or not 0 <= idx < n:
                parsed_all = False
                continue
            field = ".".join(str(p) for p in loc[3:])
            msg = str(item.get("msg", "")) or "invalid"
            bad.setdefault(idx, []).append(f"{field}: {msg}" if field else msg)
        if not parsed_all or not bad:
            log.info("batch of %d refused (HTTP 422, no event index): isolating events", n)
            return await self._deliver_singles(events, resend=resend + 1)

        outcomes: list[Outcome | None] = [None] * n
        for idx, msgs in bad.items():
            outcomes[idx] = Outcome(status="permanent", reason=_truncate("; ".join(msgs)), http_status=422,
                                    error_class="validation")
        rest = [i for i in range(n) if outcomes[i] is None]
        log.info("batch of %d refused (HTTP 422): %d invalid, resending %d", n, len(bad), len(rest))
        if rest:
            again = await self._deliver_batch([events[i] for i in rest], resend=resend + 1)
            for i, outcome in zip(rest, again, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _map_batch_response(self, resp: _Response, n: int) -> list[Outcome]:
        def bad(reason: str) -> list[Outcome]:
            log.warning("bad batch response: %s", reason)
            return [Outcome(status="retryable", reason=reason, http_status=resp.status,
                            error_class="bad_response")] * n

        if resp.body is None:
            return bad(f"batch response larger than {self._max_body} bytes")
        if not _is_json(resp.content_type):
            return bad(f"batch response has content type {resp.content_type!r}, expected application/json")
        try:
            decoded = _batch_decoder.decode(resp.body)
        except msgspec.DecodeError as exc:
            return bad(_truncate(f"undecodable batch response: {exc}"))

        outcomes: list[Outcome | None] = [None] * n
        for ok in decoded.successful_results:
            if 0 <= ok.event_index < n:
                outcomes[ok.event_index] = ALREADY_EXISTS if ok.data.get("status") == "already_exists" else DELIVERED
        # A failure wins over a success for the same index: a resend is idempotent.
        for failed in decoded.failed_results or ():
            if 0 <= failed.event_index < n:
                st, cls = classify_error(failed.error)
                outcomes[failed.event_index] = Outcome(status=st, reason=_truncate(failed.error) or "failed",
                                                       error_class=cls)
        missing = sum(o is None for o in outcomes)
        if missing:
            log.warning("batch response omits %d of %d events: they stay retryable", missing, n)
        return [
            o if o is not None
            else Outcome(status="retryable", reason="event missing from batch response",
                         error_class="incomplete_response")
            for o in outcomes
        ]

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
            resp = await self._request("POST", f"{self.api_url}/lineage/track", body=body, resend_count=resend)
        except _TransportError as err:
            return Outcome(status="retryable", reason=err.reason, error_class=err.error_class)
        if 200 <= resp.status < 300:
            return self._map_single_response(resp)
        return self._status_outcome(resp)

    def _map_single_response(self, resp: _Response) -> Outcome:
        def bad(reason: str) -> Outcome:
            log.warning("bad track response: %s", reason)
            return Outcome(status="retryable", reason=reason, http_status=resp.status, error_class="bad_response")

        if resp.body is None:
            return bad(f"track response larger than {self._max_body} bytes")
        if not _is_json(resp.content_type):
            return bad(f"track response has content type {resp.content_type!r}, expected application/json")
        try:
            decoded = _track_decoder.decode(resp.body)
        except msgspec.DecodeError as exc:
            return bad(_truncate(f"undecodable track response: {exc}"))
        if not decoded.success:
            error = decoded.error or "success=false without an error"
            st, cls = classify_error(error)
            return Outcome(status=st, reason=_truncate(error), http_status=resp.status, error_class=cls)
        if decoded.data is not None and decoded.data.get("status") == "already_exists":
            return ALREADY_EXISTS
        return DELIVERED

    def _status_outcome(self, resp: _Response) -> Outcome:
        """The outcome of an HTTP error status (single endpoint, or batch-level for retryable ones)."""
        status = resp.status
        detail = resp.detail()
        if status in (401, 403):
            if not self._auth_warned:
                self._auth_warned = True
                log.warning("lineage service refused our credentials (HTTP %d): events kept for retry; "
                            "check the token", status)
            return Outcome(status="retryable", reason=detail, http_status=status, error_class="auth")
        if status in _RETRYABLE_STATUSES or status >= 500:
            return Outcome(status="retryable", reason=detail, http_status=status, error_class=f"http_{status}",
                           retry_after=resp.retry_after())
        if status in (404, 405):
            # The track endpoint itself is missing: a wrong base URL, not a bad event. Dead-lettering
            # every event for a configuration mistake would be wrong; keep them for retry.
            if not self._endpoint_warned:
                self._endpoint_warned = True
                log.error("lineage service has no track endpoint (HTTP %d) at %s: check api.url; events kept for retry",
                          status, self.api_url)
            return Outcome(status="retryable", reason=detail, http_status=status, error_class="endpoint_missing")
        if status in (400, 422):
            if "Parent pattern not found" in detail:
                return Outcome(status="retryable", reason=detail, http_status=status, error_class="parent_missing")
            return Outcome(status="permanent", reason=detail, http_status=status, error_class="validation")
        if 400 <= status < 500:
            return Outcome(status="permanent", reason=detail, http_status=status, error_class=f"http_{status}")
        # 1xx / 3xx: a proxy or a wrong base URL — a configuration fix must not lose events.
        return Outcome(status="retryable", reason=detail, http_status=status, error_class="unexpected_status")

    # -- health and queries ------------------------------------------------------------

    async def health(self) -> ServiceHealth:
        """Availability judged from the health body (both endpoints always answer 200)."""
        try:
            resp = await self._request("GET", f"{self.api_url}/health")
            if resp.status in (404, 405):
                resp = await self._request("GET", f"{self.root_url}/health")
        except _TransportError as err:
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
        return ServiceHealth(available=available, status=status, detail=_truncate(detail), components=components)

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
        except _TransportError as err:
            raise SinkError(f"GET {path}: {err.reason} ({self.root_url})") from None
        if resp.status in allow_missing:
            return None
        if resp.status != 200:
            raise SinkError(f"GET {path}: HTTP {resp.status}: {resp.detail()}")
        obj = resp.json_object()
        if obj is None:
            raise SinkError(f"GET {path}: response is not a JSON object ({resp.content_type})")
        return obj
