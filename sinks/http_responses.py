"""The lineage service's answers, read: response bodies decoded and mapped to one Outcome per event.

Pure code (no I/O; warnings go to the ``pattern_tracker.http`` logger): what a 2xx batch or
single answer means for each event, what an HTTP error status means, which events a 422 names.
Never reads the ``input`` of a 422 item (it may hold code).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from pattern_tracker.model.events import BatchSummary
from pattern_tracker.model.outcome import ALREADY_EXISTS, DELIVERED, Outcome
from pattern_tracker.sinks.http_errors import classify_error, truncate
from pattern_tracker.sinks.retry_after import parse_retry_after

__all__ = [
    "RETRYABLE_STATUSES",
    "Response",
    "batch_outcomes",
    "invalid_event_indexes",
    "is_json",
    "single_outcome",
    "status_outcome",
]

log = logging.getLogger("pattern_tracker.http")

# Statuses that say "try again later" (the body, if any, is informational).
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


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


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


class _TrackResponse(msgspec.Struct):
    # Required: a 2xx answer that does not say "success" (``{}``, another service's JSON) is not
    # an acknowledgement — it is a bad_response, retried, never removed from the spool.
    success: bool
    data: dict[str, Any] | None = None
    error: str | None = None


_track_decoder = msgspec.json.Decoder(_TrackResponse)


# What a batch answer is read for: each event's index, whether it already existed, a failure's
# error. The rest of each item (the node's data, metadata) is skipped by the decoder, not built
# into dicts: on a 100-event answer that was most of the reading.
class _SuccessData(msgspec.Struct):
    status: Any = None


class _Success(msgspec.Struct):
    event_index: int
    data: _SuccessData = msgspec.field(default_factory=_SuccessData)


class _Failure(msgspec.Struct):
    event_index: int
    error: str = ""


class _BatchAnswer(msgspec.Struct):
    success: bool
    batch_summary: BatchSummary
    successful_results: list[_Success] = msgspec.field(default_factory=list)
    failed_results: list[_Failure] | None = None


_batch_answer_decoder = msgspec.json.Decoder(_BatchAnswer)
_any_decoder = msgspec.json.Decoder()


class Response(msgspec.Struct):
    """One HTTP answer as read: the headers kept are the ones that matter (Retry-After)."""

    status: int
    reason: str
    content_type: str
    headers: dict[str, str]
    body: bytes | None  # None when larger than the limit

    def json_object(self) -> dict[str, Any] | None:
        if self.body is None or not is_json(self.content_type):
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
                    return truncate(value)
                if isinstance(value, list) and value:
                    return truncate(_detail_items_text(value))
        elif self.body and self.content_type == "text/plain":
            return truncate(self.body[:4096].decode("utf-8", "replace"))
        return f"HTTP {self.status} {self.reason}".strip()

    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


def invalid_event_indexes(resp: Response, n: int) -> dict[int, list[str]] | None:
    """The events of a batch a 422 names (``loc: ["body", "events", i, ...]``), with their
    "field: msg" texts; None when some item names no event of the batch (or none is named)."""
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
        return None
    return bad


def _answer(resp: Response, max_body: int, decoder: Any, what: str) -> tuple[Any, str | None]:
    """A 2xx answer decoded, or why it cannot be read (``what``: "batch" or "track", for the message)."""
    if resp.body is None:
        return None, f"{what} response larger than {max_body} bytes"
    if not is_json(resp.content_type):
        return None, f"{what} response has content type {resp.content_type!r}, expected application/json"
    try:
        return decoder.decode(resp.body), None
    except msgspec.DecodeError as exc:
        return None, truncate(f"undecodable {what} response: {exc}")


def batch_outcomes(resp: Response, n: int, max_body: int) -> list[Outcome]:
    """One Outcome per event of a 2xx batch answer (``max_body``: the size limit, for the message)."""

    decoded, problem = _answer(resp, max_body, _batch_answer_decoder, "batch")
    if problem is not None:
        log.warning("bad batch response: %s", problem)
        return [Outcome(status="retryable", reason=problem, http_status=resp.status,
                        error_class="bad_response")] * n

    outcomes: list[Outcome | None] = [None] * n
    for ok in decoded.successful_results:
        if 0 <= ok.event_index < n:
            outcomes[ok.event_index] = ALREADY_EXISTS if ok.data.status == "already_exists" else DELIVERED
    # A failure wins over a success for the same index: a resend is idempotent.
    for failed in decoded.failed_results or ():
        if 0 <= failed.event_index < n:
            st, cls = classify_error(failed.error)
            outcomes[failed.event_index] = Outcome(status=st, reason=truncate(failed.error) or "failed",
                                                   error_class=cls)
    if None not in outcomes:  # the usual answer: every index accounted for
        return outcomes  # type: ignore[return-value]
    missing = sum(o is None for o in outcomes)
    if missing:
        log.warning("batch response omits %d of %d events: they stay retryable", missing, n)
    return [
        o if o is not None
        else Outcome(status="retryable", reason="event missing from batch response",
                     error_class="incomplete_response")
        for o in outcomes
    ]


def single_outcome(resp: Response, max_body: int) -> Outcome:
    """The Outcome of a 2xx answer of the single track endpoint."""

    decoded, problem = _answer(resp, max_body, _track_decoder, "track")
    if problem is not None:
        log.warning("bad track response: %s", problem)
        return Outcome(status="retryable", reason=problem, http_status=resp.status, error_class="bad_response")
    if not decoded.success:
        error = decoded.error or "success=false without an error"
        st, cls = classify_error(error)
        return Outcome(status=st, reason=truncate(error), http_status=resp.status, error_class=cls)
    if decoded.data is not None and decoded.data.get("status") == "already_exists":
        return ALREADY_EXISTS
    return DELIVERED


def status_outcome(resp: Response) -> Outcome:
    """The outcome of an HTTP error status (single endpoint, or batch-level for retryable ones).

    ``auth`` (401/403) and ``endpoint_missing`` (404/405: a wrong base URL) are retryable: a
    configuration fix must not lose events.
    """
    status = resp.status
    detail = resp.detail()
    if status in (401, 403):
        return Outcome(status="retryable", reason=detail, http_status=status, error_class="auth")
    if status in RETRYABLE_STATUSES or status >= 500:
        return Outcome(status="retryable", reason=detail, http_status=status, error_class=f"http_{status}",
                       retry_after=resp.retry_after())
    if status in (404, 405):
        # The track endpoint itself is missing: a wrong base URL, not a bad event. Dead-lettering
        # every event for a configuration mistake would be wrong; keep them for retry.
        return Outcome(status="retryable", reason=detail, http_status=status, error_class="endpoint_missing")
    if status in (400, 422):
        if "Parent pattern not found" in detail:
            return Outcome(status="retryable", reason=detail, http_status=status, error_class="parent_missing")
        return Outcome(status="permanent", reason=detail, http_status=status, error_class="validation")
    if 400 <= status < 500:
        return Outcome(status="permanent", reason=detail, http_status=status, error_class=f"http_{status}")
    # 1xx / 3xx: a proxy or a wrong base URL — a configuration fix must not lose events.
    return Outcome(status="retryable", reason=detail, http_status=status, error_class="unexpected_status")
