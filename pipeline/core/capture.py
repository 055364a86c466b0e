"""Claude Code PostToolUse payload → the file contents it produced.

Standard library only: the hook process pays for every import on every edit.
Write → the written content; Edit / MultiEdit → the file after the edit, read from disk,
falling back to applying the edit to the original the payload carries; NotebookEdit → the
cell source (each cell is its own lineage chain: ``notebook.ipynb#cell_id``). Unknown tools
and tools that write no file give no change.
"""

from __future__ import annotations

from pattern_tracker.core.bounds import bounded_number

TYPE_CHECKING = False  # no `typing` at run time: it costs the hook ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Change:
    """One new content of one file, as a source saw it (the store assigns its version)."""

    __slots__ = ("path", "code", "occurred_at", "tool_name", "tool_use_id", "session_id", "reason")

    def __init__(
        self,
        *,
        path: str,
        code: str,
        occurred_at: float,
        tool_name: str | None = None,
        tool_use_id: str | None = None,
        session_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.path = path
        self.code = code
        self.occurred_at = occurred_at
        self.tool_name = tool_name
        self.tool_use_id = tool_use_id
        self.session_id = session_id
        self.reason = reason

    def __repr__(self) -> str:  # never the code: it may hold secrets
        return f"Change(path={self.path!r}, {len(self.code)} chars, tool={self.tool_name!r})"


# 9999-12-31T23:59:59Z: the last second a date can show (``query``, the lineage store's ISO times).
LATEST_OCCURRED_AT = 253402300799.0


class PayloadError(ValueError):
    """The payload cannot be understood; the message names the field and what was wrong."""


FILE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})

if TYPE_CHECKING:
    # Reads a file's text, or returns None when it cannot (missing, binary, too large, ...).
    ReadText = Callable[[str], str | None]


def is_hook_payload(obj: dict[str, Any]) -> bool:
    return "tool_name" in obj and ("tool_input" in obj or "hook_event_name" in obj)


def _str_field(obj: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}"
        raise PayloadError(f"{where}.{key} must be a string, got {kind}")
    return value


def _apply_edit(text: str, old: str, new: str, replace_all: bool, where: str) -> str:
    if old == "":
        raise PayloadError(f"{where}.old_string is empty")
    if old not in text:
        raise PayloadError(f"{where}.old_string not found in the original file")
    return text.replace(old, new) if replace_all else text.replace(old, new, 1)


def changes_from_payload(payload: Any, now: float, read_text: ReadText) -> list[Change]:
    """The changes a payload describes; [] for tools we do not track. Raises PayloadError."""
    changes = _changes_from_payload(payload, now, read_text)
    for ch in changes:
        check_storable(ch)
    return changes


def check_path(path: str) -> None:
    """Refuse (PayloadError) a file path no file can have: empty (it would be tracked as a version
    of the current directory) or holding a NUL character (PostgreSQL could not store it either)."""
    if not path.strip():
        raise PayloadError("file path is empty")
    if "\0" in path:
        raise PayloadError("file path holds a NUL character")


def check_occurred_at(value: object, name: str = "occurred_at") -> float:
    """The time of an edit as epoch seconds from 0 to the year 9999; otherwise TypeError or
    ValueError naming ``name`` (core.bounds: nan and inf are refused too)."""
    return float(bounded_number(value, 0, LATEST_OCCURRED_AT, name=f"{name} (epoch seconds)"))


def check_storable(ch: Change) -> None:
    """Refuse (PayloadError) a change that could be spooled but never stored or sent: every way a
    change comes in (hook payload, stdin record, the Python API) checks it here.

    JSON may carry a lone surrogate ("\\ud800"): not Unicode, it cannot be encoded as UTF-8 (a
    spooled one would stop every later drain). And "\\u0000" in a path: no file is named so,
    and PostgreSQL cannot store it. And a time that is not a date: nan or inf could be spooled
    but not read back (quarantined), 1e300 stored but not shown (``query`` failed on it).
    """
    check_path(ch.path)
    try:
        check_occurred_at(ch.occurred_at)
    except (TypeError, ValueError) as exc:
        raise PayloadError(str(exc)) from None
    for name in ("path", "code", "tool_name", "tool_use_id", "session_id", "reason"):
        value = getattr(ch, name)
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise PayloadError(f"{'file path' if name == 'path' else name} is not valid Unicode "
                                   "(a lone surrogate escape)") from None


def _changes_from_payload(payload: Any, now: float, read_text: ReadText) -> list[Change]:
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(payload).__name__}")
    tool = payload.get("tool_name")
    if not isinstance(tool, str):
        raise PayloadError("payload.tool_name must be a string")
    if tool not in FILE_TOOLS:
        return []
    session_id = _str_field(payload, "session_id", "payload", required=False)
    tool_use_id = _str_field(payload, "tool_use_id", "payload", required=False)
    tin = payload.get("tool_input")
    if not isinstance(tin, dict):
        raise PayloadError("payload.tool_input must be an object")
    tresp = payload.get("tool_response")
    tresp = tresp if isinstance(tresp, dict) else {}
    meta = {"tool_name": tool, "tool_use_id": tool_use_id, "session_id": session_id, "occurred_at": now}

    if tool == "NotebookEdit":
        path = _str_field(tin, "notebook_path", "tool_input")
        assert path is not None
        if tin.get("edit_mode") == "delete":
            return []
        source = _str_field(tin, "new_source", "tool_input")
        cell = tin.get("cell_id")
        cell_path = f"{path}#{cell}" if isinstance(cell, str) and cell else path
        return [Change(path=cell_path, code=source or "", **meta)]

    path = _str_field(tin, "file_path", "tool_input")
    assert path is not None
    if tool == "Write":
        content = _str_field(tin, "content", "tool_input")
        return [Change(path=path, code=content or "", **meta)]

    on_disk = read_text(path)
    if on_disk is not None:
        return [Change(path=path, code=on_disk, **meta)]
    # The file is gone or unreadable: rebuild the result from what the payload carries.
    if tool == "Edit":
        original = tresp.get("originalFile")
        if not isinstance(original, str):
            raise PayloadError(f"cannot read {path} and the payload carries no original file")
        old = _str_field(tin, "old_string", "tool_input") or ""
        new = _str_field(tin, "new_string", "tool_input") or ""
        text = _apply_edit(original, old, new, bool(tin.get("replace_all")), "tool_input")
        return [Change(path=path, code=text, **meta)]
    original = tresp.get("originalFileContents", tresp.get("originalFile"))
    edits = tin.get("edits")
    if not isinstance(original, str):
        raise PayloadError(f"cannot read {path} and the payload carries no original file")
    if not isinstance(edits, list) or not edits:
        raise PayloadError("tool_input.edits must be a non-empty list")
    text = original
    for i, edit in enumerate(edits):
        where = f"tool_input.edits[{i}]"
        if not isinstance(edit, dict):
            raise PayloadError(f"{where} must be an object")
        text = _apply_edit(
            text,
            _str_field(edit, "old_string", where) or "",
            _str_field(edit, "new_string", where) or "",
            bool(edit.get("replace_all")),
            where,
        )
    return [Change(path=path, code=text, **meta)]
