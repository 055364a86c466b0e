"""Pattern identity and the event record — standard library only.

The hook process imports this (it must start in tens of milliseconds, so no msgspec here);
``pattern_tracker.model.events`` builds its ``PatternEvent`` Struct from the same record, so there is one
place that decides what an event holds.

* ``file_key``   = first 16 hex chars of sha256 of the absolute, normalised file path.
* ``version n``  = 1, 2, 3 … — the position of this content in the file's chain, assigned
  atomically by the store the first time the content is seen.
* ``pattern_id`` = ``"{file_key}-v{n}-{content_hash[:8]}"``: one id per version, so the
  parent of version n is named exactly and a redelivered version hits ``already_exists``.
* ``pattern_version`` = ``str(n)``; ``event_id`` = sha256(pattern_id, version)[:32].

Version 1 is ``pattern_created``; every later version is ``pattern_modified`` with
``edge_type=modified_from``.
"""

from __future__ import annotations

import os

try:  # the built-in sha256 loads in a fraction of hashlib's OpenSSL start-up (~4 ms of the hook)
    from _sha256 import sha256
except ImportError:  # pragma: no cover - other builds / Python versions
    from hashlib import sha256

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from typing import Any

from pattern_tracker.core.languages import detect_language

TRIGGERED_BY: dict[str, str] = {
    "hook": "claude_code_hook",
    "watch": "file_watcher",
    "replay": "replay",
    "stdin": "stdin",
    "spool": "spool",
    "api": "api",
}


def content_hash(code: str) -> str:
    return sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_path(path: str) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(path)))


def file_key(path: str) -> str:
    return sha256(normalise_path(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def pattern_id_for(path: str, version: int, chash: str) -> str:
    return f"{file_key(path)}-v{version}-{chash[:8]}"


def event_id_for(pattern_id: str, pattern_version: str) -> str:
    return sha256(f"{pattern_id}\0{pattern_version}".encode()).hexdigest()[:32]


def event_record(
    *,
    file_path: str,
    code: str,
    version: int,
    parent_pattern_id: str | None,
    chash: str | None = None,
    source: str,
    occurred_at: float,
    language: str | None = None,
    tool_name: str | None = None,
    tool_use_id: str | None = None,
    session_id: str | None = None,
    reason: str | None = None,
    transformation_type: str | None = None,
    timings: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """Every field of a PatternEvent, in order, for version ``version`` of ``file_path``."""
    path = normalise_path(file_path)
    chash = chash or content_hash(code)
    pid = pattern_id_for(path, version, chash)
    pversion = str(version)
    modified = version > 1 and parent_pattern_id is not None
    return {
        "event_id": event_id_for(pid, pversion),
        "event_type": "pattern_modified" if modified else "pattern_created",
        "pattern_id": pid,
        "pattern_version": pversion,
        "pattern_name": os.path.basename(path)[:255],
        "pattern_type": "code",
        "language": language or detect_language(path),
        "file_path": path,
        "code": code,
        "content_hash": chash,
        "parent_pattern_ids": [parent_pattern_id] if modified and parent_pattern_id else [],
        "edge_type": "modified_from" if modified else None,
        "transformation_type": (transformation_type or "refactor") if modified else None,
        "tool_name": tool_name,
        "tool_use_id": tool_use_id,
        "session_id": session_id,
        "source": source,
        "triggered_by": TRIGGERED_BY[source],
        "occurred_at": occurred_at,
        "reason": reason,
        "timings": timings or {},
    }
