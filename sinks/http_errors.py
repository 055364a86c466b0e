"""What went wrong talking to the lineage service, in one line: transport errors and per-event errors.

Pure code: aiohttp's exceptions become an error class and a plain reason naming the address
(``connection refused at HOST:PORT``); a per-event error string of the service becomes
retryable or permanent (:func:`classify_error`).
"""

from __future__ import annotations

import errno
import socket
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import yarl

__all__ = ["MAX_REASON", "TransportError", "classify_error", "safe_url", "transport_error", "truncate"]

MAX_REASON = 300


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


def truncate(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TransportError(Exception):
    """A request that got no HTTP answer: ``error_class`` (connection / timeout / client_error) and a one-line reason."""

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


def _host_port(host: str | None, port: int | None) -> str:
    host = host or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def transport_error(exc: BaseException, target: yarl.URL | None = None) -> TransportError:
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
            return TransportError("timeout", f"timed out connecting to {where}")
        if isinstance(exc, aiohttp.SocketTimeoutError):
            return TransportError("timeout", f"timed out waiting for an answer from {where}")
        return TransportError("timeout", f"timed out talking to {where}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = _host_port(exc.host, exc.port)
        os_error = exc.os_error
        if isinstance(exc, aiohttp.ClientSSLError):
            return TransportError("connection", truncate(f"TLS failed with {where}: {os_error}"))
        if isinstance(exc, getattr(aiohttp, "ClientConnectorDNSError", ())) or isinstance(os_error, socket.gaierror):
            return TransportError("connection", f"cannot resolve host {exc.host} (DNS lookup failed)")
        if isinstance(os_error, ConnectionRefusedError):
            return TransportError("connection", f"connection refused at {where}")
        why = (os_error.strerror or str(os_error)) if isinstance(os_error, OSError) else str(os_error)
        return TransportError("connection", truncate(f"cannot connect to {where}: {why.lower()}"))
    if isinstance(exc, ConnectionResetError) or (isinstance(exc, OSError) and exc.errno == errno.ECONNRESET):
        return TransportError("connection", f"connection reset by {where}")
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        msg = str(exc)
        return TransportError("connection", truncate(f"{name}: {msg}" if msg else name))
    return TransportError("client_error", truncate(f"{name}: {exc}"))


def safe_url(url: str) -> str:
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
