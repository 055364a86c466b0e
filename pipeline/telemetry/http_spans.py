"""HTTP client spans for the HTTP sink, through its ``on_request`` hook.

The sink calls the hook after each request; ``HttpClientSpans`` turns the call into a CLIENT span
that follows the OTel HTTP semantic conventions, so ``sinks/http.py`` needs no OTel import and
an uninstrumented sink pays nothing.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["EARLIER_ATTEMPTS", "HttpClientSpans"]

# Earlier delivery attempts of the events of the current delivery call (set by the runtime in
# the delivery task's own context; the HTTP client spans add it to the sink's resend count).
EARLIER_ATTEMPTS: contextvars.ContextVar[int] = contextvars.ContextVar("pattern_tracker_earlier_attempts", default=0)


def _error_type(status: int | None, error_class: str | None) -> str | None:
    """semconv ``error.type``: the status code for HTTP errors, else the sink's error class."""
    if error_class is None:
        return str(status) if status is not None and status >= 400 else None
    if error_class.startswith("http_") and status is not None:
        return str(status)
    return error_class


class HttpClientSpans:
    """An ``on_request`` hook for HttpSink that emits one CLIENT span per HTTP request.

    Span name = the method; attributes per the HTTP semantic conventions: ``http.request.method``,
    ``server.address``, ``server.port``, ``url.full`` (no credentials, no query),
    ``http.response.status_code``, ``error.type`` on failure, ``http.request.resend_count`` when
    > 0 (resends inside the sink plus earlier delivery attempts of the same events). The span
    is a child of the active span (the ``deliver`` span during a delivery).
    """

    def __init__(self, tracer: trace.Tracer, sink: Any, chained: Callable[..., None] | None = None) -> None:
        self._tracer = tracer
        self._chained = chained
        parts = urlsplit(getattr(sink, "root_url", "") or "")
        host = parts.netloc.rpartition("@")[2]  # never credentials (the sink strips them already)
        self._origin = f"{parts.scheme}://{host}" if parts.scheme else ""
        port = getattr(sink, "server_port", None)
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        self._base: dict[str, Any] = {"server.address": getattr(sink, "server_address", None) or parts.hostname or "",
                                      "server.port": int(port)}

    def __call__(self, method: str, url_path: str, status: int | None, duration_s: float,
                 error_class: str | None, resend_count: int) -> None:
        try:
            end = time.time_ns()
            attrs: dict[str, Any] = {"http.request.method": method, **self._base, "url.full": self._origin + url_path}
            if status is not None:
                attrs["http.response.status_code"] = status
            resend = resend_count + EARLIER_ATTEMPTS.get()
            if resend > 0:
                attrs["http.request.resend_count"] = resend
            err = _error_type(status, error_class)
            if err is not None:
                attrs["error.type"] = err
            span = self._tracer.start_span(method, kind=SpanKind.CLIENT, attributes=attrs,
                                           start_time=end - int(max(0.0, duration_s) * 1e9))
            if err is not None:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=end)
        finally:
            if self._chained is not None:
                self._chained(method, url_path, status, duration_s, error_class, resend_count)

