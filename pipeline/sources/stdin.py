"""The ``stdin`` source: one JSON object, or JSON lines, each a record of one of three kinds.

* a Claude Code PostToolUse payload (has ``tool_name``) — the file contents it produced;
* a full PatternEvent (has ``event_id``) — taken as it is, after strict validation;
* a plain change ``{"file_path": ..., "code": ..., ...}`` — versioned like a watched file.

A bad record gets one clear line naming the line number and what is wrong, is counted, and
does not stop the rest (nothing else is lost). Lines are read on a thread and handed over in
chunks through a bounded queue, so a fast producer cannot grow memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from pattern_tracker.events import PatternEvent
from pattern_tracker.hook_payload import Change, PayloadError, changes_from_payload, is_hook_payload
from pattern_tracker.runtime import Feed

log = logging.getLogger("pattern_tracker.stdin")

MAX_LINE_BYTES = 32 * 1024 * 1024
CHUNK = 256
_EOF = object()


class PlainChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    file_path: str
    code: str
    session_id: str | None = None
    tool_name: str | None = None
    tool_use_id: str | None = None
    reason: str | None = None
    occurred_at: float | None = None


_ONE_LINE = {i: f"\\x{i:02x}" for i in (*range(32), 0x7F, 0x85)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


class RecordError(ValueError):
    """One input record cannot be used; the message says why (never its contents)."""

    def __init__(self, message: str) -> None:
        # Key names and paths come from the input: control characters escaped, one line.
        super().__init__(message.translate(_ONE_LINE))


class StdinStats(msgspec.Struct):
    records: int = 0
    rejected: int = 0
    ignored: int = 0
    errors: list[str] = msgspec.field(default_factory=list)


def _describe(exc: msgspec.DecodeError) -> str:
    msg = str(exc)
    return msg.replace("`$`", "the record").replace("$.", "")


def parse_record(obj: Any, now: float, read_text: Callable[[str], str | None]) -> list[Change] | PatternEvent:
    """Classify one decoded JSON value; raises RecordError with a one-line reason."""
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {'an array' if isinstance(obj, list) else type(obj).__name__}")
    if is_hook_payload(obj):
        try:
            return changes_from_payload(obj, now, read_text)
        except PayloadError as exc:
            raise RecordError(f"hook payload: {exc}") from None
    if "event_id" in obj:
        try:
            return msgspec.convert(obj, PatternEvent)
        except msgspec.ValidationError as exc:
            raise RecordError(f"pattern event: {_describe(exc)}") from None
    try:
        plain = msgspec.convert(obj, PlainChange)
    except msgspec.ValidationError as exc:
        raise RecordError(f"change record: {_describe(exc)}") from None
    return [
        Change(
            path=plain.file_path,
            code=plain.code,
            occurred_at=plain.occurred_at if plain.occurred_at is not None else now,
            session_id=plain.session_id,
            tool_name=plain.tool_name,
            tool_use_id=plain.tool_use_id,
            reason=plain.reason,
        )
    ]


_TOO_LONG = object()


def _lines(fd: int) -> Iterator[bytes | object]:
    """Lines of ``fd`` read with os.read: no buffered-reader lock for a blocked thread to hold at exit.

    A line longer than MAX_LINE_BYTES is reported once (``_TOO_LONG``) and skipped, never buffered whole.
    """
    parts: list[bytes] = []
    size = 0
    skipping = False
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            if parts and not skipping:
                yield b"".join(parts)
            return
        start = 0
        while True:
            i = chunk.find(b"\n", start)
            if i < 0:
                break
            piece = chunk[start : i + 1]
            start = i + 1
            if skipping:
                skipping = False
            elif size + len(piece) > MAX_LINE_BYTES:
                yield _TOO_LONG
            else:
                parts.append(piece)
                yield b"".join(parts)
            parts, size = [], 0
        tail = chunk[start:]
        if tail and not skipping:
            parts.append(tail)
            size += len(tail)
            if size > MAX_LINE_BYTES:
                yield _TOO_LONG
                parts, size, skipping = [], 0, True


def _reader(fd: int, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], stop: threading.Event) -> None:
    """Thread: read lines (or one multi-line document) and hand them over with back-pressure."""

    def put(item: Any) -> bool:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            try:
                fut.result(timeout=0.2)
                return True
            except TimeoutError:
                continue
        fut.cancel()
        return False

    lineno = 0
    lines = _lines(fd)
    try:
        for line in lines:
            if stop.is_set():
                return
            lineno += 1
            if line is _TOO_LONG:
                if not put((lineno, None, f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")):
                    return
                continue
            assert isinstance(line, bytes)
            if not line.strip():
                continue
            if _starts_document(line):
                # A pretty-printed single object spans many lines: try the whole input as one.
                rest = [x for x in lines if isinstance(x, bytes)]
                doc = line + b"".join(rest)
                try:
                    msgspec.json.decode(doc)
                except (msgspec.DecodeError, RecursionError):
                    pass
                else:
                    put((lineno, doc, None))
                    return
                # Not one document either: report the first line, go on with the rest as lines.
                if not put((lineno, line, None)):
                    return
                for extra in rest:
                    lineno += 1
                    if extra.strip() and not put((lineno, extra, None)):
                        return
                return
            if not put((lineno, line, None)):
                return
    except OSError as exc:
        put((lineno + 1, None, f"cannot read stdin: {exc.strerror or exc}"))
    finally:
        put(_EOF)


def _starts_document(line: bytes) -> bool:
    stripped = line.strip()
    if not stripped.startswith(b"{"):
        return False
    try:
        msgspec.json.decode(stripped)
    except msgspec.DecodeError:
        return not stripped.endswith(b"}")
    except RecursionError:
        return False  # nested too deeply: a bad line of its own (reported by the source)
    return False


def stdin_source(
    fd: int, stats: StdinStats, read_text: Callable[[str], str | None], on_error: Callable[[str], None]
) -> Callable[[Feed, asyncio.Event], Any]:
    """A pipeline source over file descriptor ``fd``; bad records are reported through ``on_error``."""

    def reject(lineno: int, reason: str) -> None:
        stats.rejected += 1
        message = f"stdin line {lineno}: {reason}"
        if len(stats.errors) < 100:
            stats.errors.append(message)
        log.debug(message)  # the user-facing line goes through on_error (stderr), not twice
        on_error(message)

    async def run(feed: Feed, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=CHUNK * 4)
        halt = threading.Event()
        thread = threading.Thread(target=_reader, args=(fd, loop, queue, halt), name="pattern-tracker-stdin", daemon=True)
        thread.start()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            finished = False
            while not finished:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                items = [getter.result()]
                while len(items) < CHUNK and not queue.empty():
                    items.append(queue.get_nowait())
                changes: list[Change] = []
                events: list[PatternEvent] = []
                now = time.time()
                for item in items:
                    if item is _EOF:
                        finished = True
                        break
                    lineno, raw, error = item
                    if error is not None:
                        reject(lineno, error)
                        continue
                    stats.records += 1
                    try:
                        parsed = parse_record(msgspec.json.decode(raw), now, read_text)
                    except msgspec.DecodeError as exc:
                        reject(lineno, f"malformed JSON: {str(exc).removeprefix('JSON is malformed: ')}")
                        continue
                    except RecursionError:
                        reject(lineno, "malformed JSON: nested too deeply")
                        continue
                    except RecordError as exc:
                        reject(lineno, str(exc))
                        continue
                    if isinstance(parsed, PatternEvent):
                        events.append(parsed)
                    elif not parsed:
                        stats.ignored += 1
                    else:
                        changes.extend(parsed)
                if changes:
                    await feed.changes(changes, "stdin")
                if events:
                    await feed.events(events)
        finally:
            halt.set()
            stopper.cancel()

    return run
