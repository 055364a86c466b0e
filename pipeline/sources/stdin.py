"""The ``stdin`` source: one JSON object, or JSON lines, each a record of one of three kinds.

* a Claude Code PostToolUse payload (has ``tool_name``) — the file contents it produced;
* a full PatternEvent (has ``event_id``) — taken as it is, after strict validation;
* a plain change ``{"file_path": ..., "code": ..., ...}`` — versioned like a watched file.

A bad record gets one clear line naming the line number and what is wrong, is counted, and
does not stop the rest (nothing else is lost). Lines are read on a thread and handed over in
chunks through a bounded queue, so a fast producer cannot grow memory without bound. Under
overflow_policy ``block`` the reader takes no more records than the spool has room for: when a
stop ends the wait for room, every record read is stored and the rest of the input is unread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from pattern_tracker.model.events import PatternEvent
from pattern_tracker.core.capture import (
    Change,
    PayloadError,
    changes_from_payload,
    check_occurred_at,
    check_path,
    check_storable,
    is_hook_payload,
)
from pattern_tracker.runtime import ROOM_POLL, Feed

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


# A \\uD800-\\uDBFF escape (not itself escaped: an even run of backslashes before it) that no
# \\uDC00-\\uDFFF escape follows: half a UTF-16 pair, which no string can hold.
_LONE_HIGH_SURROGATE = re.compile(rb"(?<!\\)(?:\\\\)*(\\u[dD][89abAB][0-9a-fA-F]{2})(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def json_problem(exc: msgspec.DecodeError, raw: bytes) -> str:
    """What is wrong with a line that is not JSON, for its one error line.

    Why not msgspec's words alone: for half a surrogate pair (``"\\ud800"``, as a producer that
    splits an emoji in two writes) it says "Input data was truncated", which sends the user
    looking for a cut-off line when the line is whole.
    """
    text = str(exc).removeprefix("JSON is malformed: ")
    if text == "Input data was truncated" and (m := _LONE_HIGH_SURROGATE.search(raw)) is not None:
        return (f"malformed JSON: lone UTF-16 surrogate escape {m.group(1).decode()} at byte {m.start(1)}"
                " (half of a pair: not a character)")
    return f"malformed JSON: {text}"


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


# The spool keys an event by its id (LMDB: at most 511 bytes); ours are 32 hex digits.
MAX_EVENT_ID_BYTES = 256


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
            event = msgspec.convert(obj, PatternEvent)
        except msgspec.ValidationError as exc:
            raise RecordError(f"pattern event: {_describe(exc)}") from None
        if not 0 < len(event.event_id.encode("utf-8", "surrogatepass")) <= MAX_EVENT_ID_BYTES:
            raise RecordError(f"pattern event: event_id must be 1 to {MAX_EVENT_ID_BYTES} bytes")
        try:  # a lone surrogate cannot get here: the line's JSON decoder refuses it
            if event.file_path is not None:
                check_path(event.file_path)
            check_occurred_at(event.occurred_at)
        except ValueError as exc:  # PayloadError is one
            raise RecordError(f"pattern event: {exc}") from None
        return event
    try:
        plain = msgspec.convert(obj, PlainChange)
    except msgspec.ValidationError as exc:
        raise RecordError(f"change record: {_describe(exc)}") from None
    change = Change(
        path=plain.file_path,
        code=plain.code,
        occurred_at=plain.occurred_at if plain.occurred_at is not None else now,
        session_id=plain.session_id,
        tool_name=plain.tool_name,
        tool_use_id=plain.tool_use_id,
        reason=plain.reason,
    )
    try:
        check_storable(change)
    except PayloadError as exc:
        raise RecordError(f"change record: {exc}") from None
    return [change]


_TOO_LONG = object()
_CUT = object()  # stopped in the middle of a line: its first bytes were read, the record is not whole

READ_SIZE = 1 << 16

# The shortest line that can hold a record: ``{"code":"","file_path":""}`` and its newline (hook
# payloads and full events are longer). Shorter lines cannot be records and need no room in the
# spool; reading at most this many bytes per line the spool has room for never takes a record
# the spool could not store.
MIN_RECORD_LINE = len(b'{"code":"","file_path":""}\n')


def _cost(raw: bytes | None) -> int:
    """Room in the spool a line may need (0 for lines that cannot be records)."""
    return 1 if raw is not None and len(raw) >= MIN_RECORD_LINE and raw.strip() else 0


class _Budget:
    """How much of stdin the reader may take: no more records than the spool has room for.

    Under overflow_policy ``block`` a source waits for room; a reader that went on reading
    meanwhile would hold records it can neither store nor give back when it is stopped. So the
    consumer sets ``limit`` (records processed + room now; None: no limit) and the reader counts
    the records it hands over (``taken``); the line being read holds a place from its first byte.
    """

    def __init__(self, halt: threading.Event) -> None:
        self._cond = threading.Condition()
        self._halt = halt
        self.limit: int | None = None
        self.taken = 0
        self.whole = False  # one multi-line document: read to the end, its one place reserved
        self.waiting = False  # the reader waits for room (the consumer polls the spool)

    def set_limit(self, limit: int | None) -> None:
        with self._cond:
            self.limit = limit
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def took(self, raw: bytes | None) -> None:
        with self._cond:
            self.taken += _cost(raw)

    def bytes_to_read(self, partial: bool) -> int:
        """Wait until some input may be read; how many bytes at most (0: halted).

        ``left`` places for new lines: reading ``left * MIN_RECORD_LINE`` bytes cannot complete
        more than ``left`` records nor start one more. With no place left, a line already begun
        is finished a byte at a time, so the stream is left at a line boundary.
        """
        with self._cond:
            while not self._halt.is_set():
                if self.limit is None or self.whole:
                    return READ_SIZE
                left = self.limit - self.taken - (1 if partial else 0)
                if left > 0:
                    return min(READ_SIZE, left * MIN_RECORD_LINE)
                if partial:
                    return 1
                self.waiting = True
                self._cond.wait()
                self.waiting = False
            return 0

    def reserve_whole(self) -> bool:
        """Wait for one place and read the rest as one document (False: halted)."""
        while self.bytes_to_read(False):
            with self._cond:
                if self.limit is None or self.limit - self.taken > 0:
                    self.whole = True
                    return True
        return False


def _wait_readable(fd: int, wake: int) -> bool:
    """Block until ``fd`` can be read without blocking, or ``wake`` is written (False)."""
    try:
        ready, _, _ = select.select([fd, wake], [], [])
    except (OSError, ValueError):
        return True  # not selectable: a plain blocking read
    return wake not in ready


def _lines(fd: int, budget: _Budget, wake: int) -> Iterator[bytes | object]:
    """Lines of ``fd`` read with os.read: no buffered-reader lock for a blocked thread to hold at exit.

    Reads no more than ``budget`` allows and nothing once halted (``wake`` is written then);
    a line longer than MAX_LINE_BYTES is reported once (``_TOO_LONG``) and skipped, never
    buffered whole; halted within a line: ``_CUT``.
    """
    parts: list[bytes] = []
    size = 0
    skipping = False
    while True:
        n = budget.bytes_to_read(bool(parts) or skipping)
        if n and not _wait_readable(fd, wake):
            n = 0
        if not n:
            if parts:
                yield _CUT
            return
        chunk = os.read(fd, n)
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


def _reader(fd: int, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], budget: _Budget,
            halt: threading.Event, abandon: threading.Event, wake: int) -> None:  # fmt: skip
    """Thread: read lines (or one multi-line document) and hand them over with back-pressure.

    ``halt``: read nothing more, but hand over what was read (it is stored); ``abandon``: the
    consumer is gone, stop handing over.
    """

    def put(item: Any) -> bool:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not abandon.is_set():
            try:
                fut.result(timeout=0.2)
                if isinstance(item, tuple):
                    budget.took(item[1])
                return True
            except TimeoutError:
                continue
        fut.cancel()
        return False

    lineno = 0
    lines = _lines(fd, budget, wake)
    try:
        for line in lines:
            lineno += 1
            if line is _CUT:
                log.warning("stdin: stopped in the middle of line %d; its first bytes were read and it is not stored", lineno)
                return
            if line is _TOO_LONG:
                if not put((lineno, None, f"line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")):
                    return
                continue
            assert isinstance(line, bytes)
            if not line.strip():
                continue
            if _starts_document(line):
                # A pretty-printed single object spans many lines: try the whole input as one.
                if not budget.reserve_whole():
                    log.warning("stdin: stopped after line %d of a multi-line document; it is not stored", lineno)
                    return
                items = list(lines)
                if _CUT in items:
                    log.warning("stdin: stopped within a multi-line document (from line %d); it is not stored", lineno)
                    return
                rest = [x for x in items if isinstance(x, bytes)]
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


async def _drain_reader(queue: asyncio.Queue[Any], thread: threading.Thread, timeout: float = 2.0) -> list[Any]:
    """After a halt: everything the reader still hands over, up to its end marker."""
    items: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = await asyncio.wait_for(queue.get(), timeout=0.05)
        except TimeoutError:
            if not thread.is_alive() and queue.empty():
                break
            continue
        items.append(item)
        if item is _EOF:
            break
    return items


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
        halt, abandon = threading.Event(), threading.Event()
        budget = _Budget(halt)
        wake_r, wake_w = os.pipe()
        processed = 0  # records taken from the reader and stored (or rejected)

        async def allow() -> None:
            room = await feed.room()
            budget.set_limit(None if room is None else processed + room)
            if room == 0 and budget.waiting:
                feed.waiting_for_room()

        await allow()
        thread = threading.Thread(target=_reader, args=(fd, loop, queue, budget, halt, abandon, wake_r),
                                  name="pattern-tracker-stdin", daemon=True)
        thread.start()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            finished = False
            while not finished:
                if stop.is_set():
                    # Read nothing more; what the reader already took is stored (it fits: the
                    # budget), the rest of the input stays unread.
                    if budget.waiting:
                        feed.stopped_waiting_for_room()
                    halt.set()
                    budget.wake()
                    os.write(wake_w, b"x")
                    items = await _drain_reader(queue, thread)
                    finished = True
                else:
                    getter = asyncio.ensure_future(queue.get())
                    timeout = ROOM_POLL if budget.limit is not None else None
                    await asyncio.wait({getter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        if not stop.is_set() and budget.waiting:
                            await allow()  # the reader waits for room: has the spool some now?
                        continue
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
                    processed += _cost(raw)
                    if error is not None:
                        reject(lineno, error)
                        continue
                    stats.records += 1
                    try:
                        parsed = parse_record(msgspec.json.decode(raw), now, read_text)
                    except msgspec.DecodeError as exc:
                        reject(lineno, json_problem(exc, raw))
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
                if budget.limit is not None and not finished:
                    await allow()
        finally:
            halt.set()
            abandon.set()
            budget.wake()
            stopper.cancel()
            os.write(wake_w, b"x")
            await asyncio.to_thread(thread.join, 1.0)
            if not thread.is_alive():
                os.close(wake_r)
                os.close(wake_w)

    return run
