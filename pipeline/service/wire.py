"""The stand-in's wire format: request bodies decoded (422s in the shape of pydantic/FastAPI) and
JSON answers encoded, as the real service sends them (the Phase 4 API contract, docs/phase4-contract.md).
Request bodies (code) are never logged."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import lmdb
import msgspec
from aiohttp import web

from pattern_tracker.core.store import StoreError
from pattern_tracker.sinks.lineage_contract import LineageUnavailable

__all__ = ["decode_body", "json_response", "ms_since", "op_metadata", "read_body", "store_failure",
           "store_unavailable", "unprocessable"]

log = logging.getLogger("pattern_tracker.service.serve")  # one logger for the stand-in, whichever module


_json_encode = msgspec.json.Encoder().encode


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_json_encode(body), status=status, content_type="application/json", headers=headers)


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


# -- 422: msgspec errors in the shape of pydantic/FastAPI ----------------------------------------

_PATH_RE = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_EXPECTED_RE = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`")
_MISSING_RE = re.compile(r"^Object missing required field `([^`]+)`")
_BYTE_RE = re.compile(r"\(byte (\d+)\)")
_TYPE_NAMES = {
    "str": ("string_type", "Input should be a valid string"),
    "int": ("int_type", "Input should be a valid integer"),
    "float": ("float_type", "Input should be a valid number"),
    "bool": ("bool_type", "Input should be a valid boolean"),
    "array": ("list_type", "Input should be a valid list"),
    "object": ("dict_type", "Input should be a valid dictionary"),
}


def _walk(doc: Any, loc: list[str | int]) -> Any:
    for part in loc:
        try:
            doc = doc[part]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _decode_error_detail(body: bytes, exc: msgspec.DecodeError) -> list[dict[str, Any]]:
    """Translate a msgspec error (path ``$.events[3].pattern_id``) into FastAPI's 422 detail list."""
    msg = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        m = _BYTE_RE.search(msg)
        pos = int(m.group(1)) if m else (len(body) if "truncated" in msg else 0)
        return [{"type": "json_invalid", "loc": ["body", pos], "msg": "JSON decode error",
                 "input": {}, "ctx": {"error": msg}}]
    text, _, path = msg.partition(" - at `")
    loc: list[str | int] = []
    for name, index in _PATH_RE.findall(path.rstrip("`").removeprefix("$")):
        loc.append(int(index) if index else name)
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        doc = None
    m = _MISSING_RE.match(text)
    if m:
        return [{"type": "missing", "loc": ["body", *loc, m.group(1)], "msg": "Field required", "input": _walk(doc, loc)}]
    value = _walk(doc, loc)
    m = _EXPECTED_RE.match(text)
    if m:
        expected = m.group(1).split(" | ")[0]
        if expected == "object" and (not loc or isinstance(loc[-1], int)):  # a model, not a dict field
            kind, text_msg = "model_attributes_type", "Input should be a valid dictionary or object to extract fields from"
        else:
            kind, text_msg = _TYPE_NAMES.get(expected, ("value_error", text))
        return [{"type": kind, "loc": ["body", *loc], "msg": text_msg, "input": value}]
    return [{"type": "value_error", "loc": ["body", *loc], "msg": text, "input": value}]


def unprocessable(detail: list[dict[str, Any]]) -> web.Response:
    return json_response({"detail": detail}, status=422)


async def read_body(request: web.Request, max_bytes: int) -> bytes | web.Response:
    """The request body, or the 413 to send when it exceeds ``max_bytes``.

    Read as its chunks joined once: ``request.read()`` grows a bytearray chunk by chunk and then
    copies it whole, two copies of every batch body (~1 MB) on the thread serve's store waits for.
    """
    too_large = json_response({"detail": f"Request body exceeds {max_bytes} bytes"}, status=413)
    if request.content_length is not None and request.content_length > max_bytes:
        return too_large
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > max_bytes:
            return too_large
        chunks.append(chunk)
    return b"".join(chunks)


def decode_body(body: bytes, typ: type) -> Any:
    if not body.strip():
        return unprocessable([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    try:
        return msgspec.json.decode(body, type=typ)
    except msgspec.DecodeError as exc:
        return unprocessable(_decode_error_detail(body, exc))


def op_metadata(operation: str, pattern_id: str, duration_ms: float, **extra: Any) -> dict[str, Any]:
    return {"correlation_id": str(uuid.uuid4()), "operation": operation, "duration_ms": duration_ms,
            "pattern_id": pattern_id, **extra}


def store_unavailable(exc: BaseException) -> bool:
    """The store could not answer (503, retry later), as opposed to a bug of ours (500)."""
    return isinstance(exc, (StoreError, lmdb.Error, LineageUnavailable))


def store_failure(exc: Exception) -> web.Response:
    if store_unavailable(exc):
        log.error("lineage store unavailable: %s", exc)
        retry_after = exc.retry_after if isinstance(exc, LineageUnavailable) else 1
        return json_response({"detail": "Database connection not available"}, status=503,
                             headers={"Retry-After": str(retry_after)})
    log.exception("lineage tracking failed")
    return json_response({"detail": f"Lineage tracking failed: {exc}"}, status=500)
